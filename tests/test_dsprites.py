"""The procedural dSprites generator: factor table, sprite drawing, translation, packed cache, dataset splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aekit.data import DataConfig, load_data
from aekit.data import dsprites as ds


def test_factor_table_covers_every_combination_once():
    assert ds.N_IMAGES == 737_280 == 3 * 6 * 40 * 32 * 32
    f = ds.factors_of(np.arange(ds.N_IMAGES))
    assert f.shape == (ds.N_IMAGES, 5) and f.dtype == np.int64
    assert (f.max(0) + 1).tolist() == list(ds.FACTOR_SIZES) and (f.min(0) == 0).all()
    assert np.array_equal(ds.index_of(f), np.arange(ds.N_IMAGES))
    assert f[1].tolist() == [0, 0, 0, 0, 1]  # posY fastest, as in the original file
    v = ds.factor_values(f[[0, -1]])
    assert v[0].tolist() == [0, 0.5, 0, 0, 0] and v[1].tolist() == pytest.approx([2, 1.0, 2 * np.pi, 1, 1])


def test_sprites_are_binary_nonempty_and_grow_with_scale():
    bank = ds.sprite_bank()
    assert bank.shape == (3, 6, 40, 32, 32) and bank.dtype == bool
    area = bank.sum((3, 4))
    assert (area > 20).all()
    assert (np.diff(area.mean(2), axis=1) > 0).all()  # larger scale → larger area, every shape
    assert np.array_equal(bank[:, :, 0], bank[:, :, -1])  # orientation 0 and 2π are the same image
    assert not np.array_equal(bank[0, 5, 0], bank[0, 5, 5])  # a square turned by 2π/39·5 differs
    assert np.array_equal(bank[1, 5, 0], bank[1, 5, 0][::-1, ::-1])  # an ellipse is point-symmetric
    heart = bank[2, 5, 0]
    assert not np.array_equal(heart, heart[::-1])  # a heart is not (upside down differs)
    assert np.array_equal(heart, heart[:, ::-1]) or (heart != heart[:, ::-1]).sum() <= 4  # ~ mirror symmetric


def test_render_is_translation_of_the_sprite():
    bank = ds.sprite_bank()
    base = np.array([[2, 5, 7, 0, 0]])
    imgs = ds.render(ds.index_of(np.concatenate([base, base + [0, 0, 0, 3, 0], base + [0, 0, 0, 0, 31]])))
    assert imgs.shape == (3, 64, 64) and imgs.dtype == np.uint8 and set(np.unique(imgs)) <= {0, 1}
    assert imgs[0].sum() == bank[2, 5, 7].sum()  # nothing is cut off at the border
    assert np.array_equal(imgs[0][:32, :32], bank[2, 5, 7].astype(np.uint8))
    assert np.array_equal(np.roll(imgs[0], 3, axis=1), imgs[1])  # posX + 3 = three columns right
    assert np.array_equal(np.roll(imgs[0], 31, axis=0), imgs[2])  # posY = rows down


def test_packed_cache_layout_matches_render(tmp_path, monkeypatch):
    bank = ds.sprite_bank()
    sid = 517
    blk = np.unpackbits(ds._packed_block(bank.reshape(-1, 32, 32)[sid]), axis=1).reshape(-1, 64, 64)
    assert np.array_equal(blk, ds.render(np.arange(sid * 1024, (sid + 1) * 1024)))
    # the whole cache path on a two-sprite "dataset" (the real one is 377 MB)
    small = bank[:1, :1, :2].copy()
    monkeypatch.setattr(ds, "sprite_bank", lambda: small)
    monkeypatch.setattr(ds, "N_IMAGES", 2048)
    path = ds.build_cache(tmp_path / "dsprites" / ds.CACHE_FILE)
    assert path.stat().st_size > 2048 * 512 and not list(path.parent.glob(".*.tmp"))
    idx = np.array([0, 5, 1023, 1024, 2047])
    assert np.array_equal(ds._from_cache(path, idx), ds.render(idx))


def test_dataset_subsample_with_factors():
    cfg = DataConfig("dsprites", subsample=600)
    data = load_data(cfg)
    assert data.shape == (1, 64, 64) and data.classes == ds.SHAPES and data.kind == "image"
    assert len(data.train) + len(data.val) + len(data.test) == 600
    for s in (data.train, data.val, data.test):
        assert s.factors.shape == (len(s), 5) and s.factors.dtype == torch.int64
        assert torch.equal(s.y, s.factors[:, 0])
        assert set(torch.unique(s.x).tolist()) <= {0, 255}
    # the images are those of their factors
    idx = ds.index_of(data.test.factors[:20].numpy())
    assert np.array_equal(data.test.x[:20, 0].numpy(), ds.render(idx) * 255)
    again = load_data(cfg)
    assert torch.equal(again.train.factors, data.train.factors)
    moved = data.test.to("cpu")
    assert torch.equal(moved.factors, data.test.factors)
