"""``images:DIR``: PNG/JPEG folders, labels from sub-folders, channels, sizes and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from aekit.data import DataConfig, load_data
from aekit.errors import DataError


def save(path: Path, array: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.fromarray(array)
    if mode is not None:
        img = img.convert(mode)
    img.save(path)
    return path


def gray(seed: int, h: int = 16, w: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w), dtype=np.uint8)


def rgb(seed: int, h: int = 16, w: int = 16) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_unlabelled_grayscale_folder(tmp_path: Path) -> None:
    arrays = [gray(i) for i in range(10)]
    for i, a in enumerate(arrays):
        save(tmp_path / f"img{i:02d}.png", a)
    spec = f"images:{tmp_path}"
    d = load_data(DataConfig(spec=spec, val_fraction=0.25))
    assert d.name == spec and d.kind == "image" and d.classes is None and d.train.y is None
    assert d.shape == (1, 16, 16) and d.train.x.dtype == torch.uint8
    assert (len(d.train), len(d.val), len(d.test)) == (6, 2, 2)  # test_fraction 0.2 held out, then val
    everything = torch.cat([d.train.x, d.val.x, d.test.x])[:, 0].numpy()
    assert sorted(map(bytes, everything)) == sorted(map(bytes, arrays))  # pixels exactly preserved (PNG)
    again = load_data(DataConfig(spec=spec, val_fraction=0.25))
    assert torch.equal(d.test.x, again.test.x)


def test_class_subfolders_give_sorted_labels(tmp_path: Path) -> None:
    for c, name in enumerate(["zebra", "apple", "mango"]):
        for i in range(4):
            save(tmp_path / name / f"{i}.PNG", np.full((8, 8, 3), 10 * c + i, np.uint8))
    save(tmp_path / "mango" / "nested" / "deep.jpeg", np.full((8, 8, 3), 200, np.uint8))
    (tmp_path / "notes.txt").write_text("ignored")
    (tmp_path / ".hidden").mkdir()
    save(tmp_path / ".hidden" / "x.png", np.zeros((3, 3), np.uint8))
    d = load_data(DataConfig(spec=f"images:{tmp_path}", val_fraction=0.0))
    assert d.classes == ("apple", "mango", "zebra")
    assert d.shape == (3, 8, 8)
    x = torch.cat([d.train.x, d.test.x])
    y = torch.cat([d.train.y, d.test.y])
    assert len(x) == 13 and torch.bincount(y).tolist() == [4, 5, 4]
    # the first pixel identifies the folder: zebra (c=0) → label 2, apple (c=1) → 0, mango (c=2) → 1;
    # nested/deep.jpeg (pixel ≈ 200) belongs to its first-level folder, mango
    for value, label in zip(x[:, 0, 0, 0].tolist(), y.tolist(), strict=True):
        assert label == (1 if value > 150 else {0: 2, 1: 0, 2: 1}[value // 10])


def test_rgb_and_gray_mix_loads_as_rgb(tmp_path: Path) -> None:
    g = gray(1, 8, 8)
    save(tmp_path / "a.png", g)
    for i in range(4):
        save(tmp_path / f"c{i}.png", rgb(i, 8, 8))
    d = load_data(DataConfig(spec=f"images:{tmp_path}", val_fraction=0.0))
    assert d.shape == (3, 8, 8)
    x = torch.cat([d.train.x, d.test.x])
    gray_as_rgb = torch.from_numpy(np.stack([g] * 3))
    assert any(torch.equal(xi, gray_as_rgb) for xi in x)


def test_grayscale_option_forces_one_channel(tmp_path: Path) -> None:
    arrays = [rgb(i, 8, 8) for i in range(5)]
    for i, a in enumerate(arrays):
        save(tmp_path / f"{i}.png", a)
    d = load_data(DataConfig(spec=f"images:{tmp_path}", grayscale=True))
    assert d.shape == (1, 8, 8)
    expected = {bytes(np.asarray(Image.fromarray(a).convert("L"))) for a in arrays}
    got = {bytes(xi[0].numpy()) for xi in torch.cat([d.train.x, d.val.x, d.test.x])}
    assert got == expected


def test_modes_rgba_palette_16bit_and_jpeg(tmp_path: Path) -> None:
    save(tmp_path / "rgba.png", np.dstack([rgb(0, 8, 8), np.full((8, 8), 128, np.uint8)]))
    save(tmp_path / "pal.png", rgb(1, 8, 8), mode="P")
    save(tmp_path / "photo.JPG", rgb(2, 8, 8))
    Image.fromarray(np.full((8, 8), 65535, np.uint16)).save(tmp_path / "deep.png")  # 16-bit grayscale
    d = load_data(DataConfig(spec=f"images:{tmp_path}", val_fraction=0.0, test_fraction=0.25))
    assert d.shape == (3, 8, 8)
    x = torch.cat([d.train.x, d.test.x])
    assert len(x) == 4 and any(bool((xi == 255).all()) for xi in x)  # 65535 → 255


def test_all_grayscale_modes_give_one_channel(tmp_path: Path) -> None:
    save(tmp_path / "l.png", gray(0, 8, 8))
    save(tmp_path / "la.png", np.dstack([gray(1, 8, 8), gray(2, 8, 8)]))
    save(tmp_path / "bw.png", gray(3, 8, 8), mode="1")
    Image.fromarray(np.full((8, 8), 256 * 100, np.uint16)).save(tmp_path / "deep.png")
    d = load_data(DataConfig(spec=f"images:{tmp_path}", val_fraction=0.0, test_fraction=0.25))
    assert d.shape == (1, 8, 8)
    x = torch.cat([d.train.x, d.test.x])
    assert any(bool((xi == 100).all()) for xi in x)  # 16-bit value 25600 → 100


def test_different_sizes_need_image_size(tmp_path: Path) -> None:
    save(tmp_path / "a.png", gray(0, 32, 32))
    save(tmp_path / "b.png", gray(1, 48, 64))
    save(tmp_path / "c.png", gray(2, 32, 32))
    with pytest.raises(DataError) as e:
        load_data(f"images:{tmp_path}")
    msg = str(e.value)
    assert "different sizes" in msg and "a.png 32×32" in msg and "b.png 64×48" in msg
    assert "--image-size N" in msg


def test_image_size_resizes_everything(tmp_path: Path) -> None:
    save(tmp_path / "a.png", np.full((32, 32), 50, np.uint8))
    save(tmp_path / "b.png", np.full((48, 64), 50, np.uint8))
    save(tmp_path / "c.png", np.full((20, 20), 50, np.uint8))
    d = load_data(DataConfig(spec=f"images:{tmp_path}", image_size=16, val_fraction=0.0, test_fraction=0.34))
    assert d.shape == (1, 16, 16)
    assert bool((torch.cat([d.train.x, d.test.x]) == 50).all())  # a flat image stays flat


def test_top_level_and_subfolder_images_mixed(tmp_path: Path) -> None:
    save(tmp_path / "loose.png", gray(0))
    save(tmp_path / "cls" / "a.png", gray(1))
    with pytest.raises(DataError, match="both at its top level.*loose.png"):
        load_data(f"images:{tmp_path}")


def test_corrupt_image(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / f"{i}.png", gray(i))
    (tmp_path / "1.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    with pytest.raises(DataError, match=r"cannot read image .*1\.png.*delete or replace"):
        load_data(f"images:{tmp_path}")


def test_truncated_image_pixels(tmp_path: Path) -> None:
    for i in range(3):
        save(tmp_path / f"{i}.png", gray(i, 64, 64))
    data = (tmp_path / "2.png").read_bytes()
    (tmp_path / "2.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=r"2\.png"):
        load_data(f"images:{tmp_path}")


def test_empty_folder_and_not_a_folder(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError, match="holds no .png/.jpg/.jpeg files"):
        load_data(f"images:{tmp_path}")
    with pytest.raises(DataError, match="is not a folder"):
        load_data(f"images:{tmp_path / 'readme.txt'}")
