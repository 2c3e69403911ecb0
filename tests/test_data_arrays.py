"""``npy:``, ``npz:`` and ``csv:`` sources: layouts, labels, standardisation and error messages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from aekit.data import DataConfig, load_data
from aekit.errors import DataError


def all_x(d) -> torch.Tensor:
    return torch.cat([d.train.x, d.val.x, d.test.x])


# ------------------------------------------------------------------------------------------------- npy


def test_npy_uint8_nhw_images(tmp_path: Path) -> None:
    x = np.random.default_rng(0).integers(0, 256, (50, 12, 10), dtype=np.uint8)
    np.save(tmp_path / "x.npy", x)
    spec = f"npy:{tmp_path / 'x.npy'}"
    d = load_data(DataConfig(spec=spec))
    assert d.name == spec and d.kind == "image" and d.shape == (1, 12, 10) and d.train.x.dtype == torch.uint8
    assert (len(d.train), len(d.val), len(d.test)) == (36, 4, 10) and d.train.y is None
    assert sorted(map(bytes, all_x(d)[:, 0].numpy())) == sorted(map(bytes, x))


@pytest.mark.parametrize("layout", ["nchw", "nhwc"])
@pytest.mark.parametrize("channels", [1, 3])
def test_npy_uint8_4d_layouts(tmp_path: Path, layout: str, channels: int) -> None:
    nchw = np.random.default_rng(1).integers(0, 256, (20, channels, 6, 8), dtype=np.uint8)
    np.save(tmp_path / "x.npy", nchw if layout == "nchw" else nchw.transpose(0, 2, 3, 1))
    d = load_data(DataConfig(spec=f"npy:{tmp_path / 'x.npy'}"))
    assert d.shape == (channels, 6, 8)
    assert sorted(map(bytes, all_x(d).numpy())) == sorted(map(bytes, nchw))


def test_npy_float_images_in_unit_interval(tmp_path: Path) -> None:
    x = np.random.default_rng(2).integers(0, 256, (20, 5, 5)).astype(np.float32) / 255.0
    np.save(tmp_path / "x.npy", x)
    d = load_data(f"npy:{tmp_path / 'x.npy'}")
    assert d.kind == "image" and d.train.x.dtype == torch.uint8
    assert sorted(map(bytes, all_x(d)[:, 0].numpy())) == sorted(map(bytes, np.rint(x * 255).astype(np.uint8)))


def test_npy_float_images_out_of_range(tmp_path: Path) -> None:
    np.save(tmp_path / "x.npy", np.linspace(-1, 3, 20 * 16, dtype=np.float32).reshape(20, 4, 4))
    with pytest.raises(DataError, match=r"values in \[-1, 3\].*uint8 images.*2-D \(N, D\) table"):
        load_data(f"npy:{tmp_path / 'x.npy'}")


def test_npy_table_is_standardised_with_train_stats(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    x = rng.normal(5.0, 3.0, (400, 6)) * np.arange(1, 7)
    np.save(tmp_path / "t.npy", x)
    d = load_data(f"npy:{tmp_path / 't.npy'}")
    assert d.kind == "table" and d.shape == (6,) and d.train.x.dtype == torch.float32
    assert torch.allclose(d.train.x.mean(0), torch.zeros(6), atol=1e-5)
    assert torch.allclose(d.train.x.std(0, unbiased=False), torch.ones(6), atol=1e-4)
    assert not torch.allclose(d.test.x.mean(0), torch.zeros(6), atol=1e-5)  # test uses train stats
    back = (d.test.x.double() * d.std.double() + d.mean.double()).numpy()  # original units
    assert all(np.abs(x - r).max(axis=1).min() < 1e-3 for r in back)


def test_npy_nan_reports_count_and_first_index(tmp_path: Path) -> None:
    x = np.zeros((10, 3))
    x[4, 1] = np.nan
    x[7, 2] = np.inf
    np.save(tmp_path / "t.npy", x)
    with pytest.raises(DataError, match=r"2 NaN/inf value\(s\), the first at index \(4, 1\)"):
        load_data(f"npy:{tmp_path / 't.npy'}")


def test_npy_object_array_is_refused(tmp_path: Path) -> None:
    np.save(tmp_path / "o.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="object arrays / pickles are not supported"):
        load_data(f"npy:{tmp_path / 'o.npy'}")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros(10), r"shape \(10,\): reshape it to \(N, D\)"),
        (np.zeros((10, 4, 4, 4), np.uint8), "neither 1 nor 3 channels"),
        (np.zeros((10, 2, 2, 2, 2), np.uint8), "provide uint8 images"),
        (np.array(["a", "b", "c"]).reshape(3, 1), "not numbers"),
        (np.full((10, 4, 4), 300, np.int32), r"values in \[300, 300\]"),
    ],
)
def test_npy_bad_shapes_and_dtypes(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "a.npy", array)
    with pytest.raises(DataError, match=message):
        load_data(f"npy:{tmp_path / 'a.npy'}")


def test_npy_integer_images_in_byte_range_are_accepted(tmp_path: Path) -> None:
    np.save(tmp_path / "a.npy", np.arange(10 * 16, dtype=np.int64).reshape(10, 4, 4) % 256)
    assert load_data(f"npy:{tmp_path / 'a.npy'}").train.x.dtype == torch.uint8


def test_npy_missing_and_wrong_format(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_data(f"npy:{tmp_path / 'nope.npy'}")
    np.savez(tmp_path / "a.npz", x=np.zeros((5, 2)))
    with pytest.raises(DataError, match="use --data npz:"):
        load_data(f"npy:{tmp_path / 'a.npz'}")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(DataError, match="cannot load"):
        load_data(f"npy:{tmp_path / 'junk.npy'}")


# ------------------------------------------------------------------------------------------------- npz


def test_npz_x_and_y(tmp_path: Path) -> None:
    x = np.random.default_rng(4).integers(0, 256, (30, 1, 4, 4), dtype=np.uint8)
    y = np.arange(30) % 3
    np.savez(tmp_path / "d.npz", y=y, x=x)
    d = load_data(f"npz:{tmp_path / 'd.npz'}")
    assert d.shape == (1, 4, 4) and d.classes == ("0", "1", "2")
    # labels still belong to their samples after the split
    lookup = {bytes(xi): int(yi) for xi, yi in zip(x, y, strict=True)}
    for split in (d.train, d.val, d.test):
        assert all(lookup[bytes(xi.numpy())] == int(yi) for xi, yi in zip(split.x, split.y, strict=True))


@pytest.mark.parametrize("xkey, ykey", [("X", "labels"), ("images", "targets"), ("data", None), ("whatever", "y")])
def test_npz_key_names(tmp_path: Path, xkey: str, ykey: str | None) -> None:
    arrays = {xkey: np.random.default_rng(5).normal(size=(20, 3))}
    if ykey:
        arrays[ykey] = np.array(["cat", "dog"] * 10)
    np.savez(tmp_path / "d.npz", **arrays)
    d = load_data(f"npz:{tmp_path / 'd.npz'}")
    assert d.kind == "table" and d.shape == (3,)
    assert d.classes == (("cat", "dog") if ykey else None)


def test_npz_keras_style_train_test(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    np.savez(
        tmp_path / "mnist.npz",
        x_train=rng.integers(0, 256, (40, 6, 6), dtype=np.uint8),
        y_train=np.arange(40) % 10,
        x_test=rng.integers(0, 256, (15, 6, 6), dtype=np.uint8),
        y_test=np.arange(15) % 10,
    )
    d = load_data(f"npz:{tmp_path / 'mnist.npz'}")
    assert (len(d.train), len(d.val), len(d.test)) == (36, 4, 15) and d.classes == tuple("0123456789")


def test_npz_label_count_mismatch(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 2)), y=np.zeros(9, np.int64))
    with pytest.raises(DataError, match="10 train samples but 9 labels"):
        load_data(f"npz:{tmp_path / 'd.npz'}")


def test_npz_non_integer_labels(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 2)), y=np.linspace(0, 1, 10))
    with pytest.raises(DataError, match="not whole numbers"):
        load_data(f"npz:{tmp_path / 'd.npz'}")


def test_npz_negative_labels_are_remapped(tmp_path: Path) -> None:
    np.savez(tmp_path / "d.npz", x=np.arange(20.0).reshape(10, 2), y=np.array([-1, 1] * 5))
    d = load_data(DataConfig(spec=f"npz:{tmp_path / 'd.npz'}"))
    assert d.classes == ("-1", "1") and set(torch.cat([d.train.y, d.test.y]).tolist()) == {0, 1}


def test_npz_errors(tmp_path: Path) -> None:
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(DataError, match="holds no arrays"):
        load_data(f"npz:{tmp_path / 'empty.npz'}")
    np.save(tmp_path / "a.npy", np.zeros((5, 2)))
    with pytest.raises(DataError, match="use --data npy:"):
        load_data(f"npz:{tmp_path / 'a.npy'}")
    np.savez(tmp_path / "obj.npz", x=np.array([None, {}], dtype=object))
    with pytest.raises(DataError, match="object arrays"):
        load_data(f"npz:{tmp_path / 'obj.npz'}")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 broken zip")
    with pytest.raises(DataError, match="cannot load"):
        load_data(f"npz:{tmp_path / 'bad.npz'}")


# ------------------------------------------------------------------------------------------------- csv


def write_csv(path: Path, text: str) -> str:
    path.write_text(text)
    return f"csv:{path}"


def test_csv_with_header_and_named_label_column(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    rows = ["height,species,weight"]
    for i in range(60):
        rows.append(f"{rng.normal(170, 10):.3f},{['setosa', 'virginica', 'alpha'][i % 3]},{rng.normal(70, 5):.3f}")
    spec = write_csv(tmp_path / "t.csv", "\n".join(rows) + "\n")
    d = load_data(DataConfig(spec=spec, label_column="species"))
    assert d.name == spec and d.kind == "table" and d.shape == (2,)
    assert d.feature_names == ("height", "weight")
    assert d.classes == ("alpha", "setosa", "virginica")
    assert torch.bincount(torch.cat([d.train.y, d.val.y, d.test.y])).tolist() == [20, 20, 20]
    assert torch.allclose(d.train.x.mean(0), torch.zeros(2), atol=1e-5)
    assert torch.allclose(d.train.x.std(0, unbiased=False), torch.ones(2), atol=1e-4)
    assert 160 < float(d.mean[0]) < 180 and 60 < float(d.mean[1]) < 80


def test_csv_headerless_with_label_index(tmp_path: Path) -> None:
    text = "".join(f"{i}.5;{i % 2};{2 * i}\n" for i in range(20))  # semicolon-separated
    d = load_data(DataConfig(spec=write_csv(tmp_path / "t.csv", text), label_column="1"))
    assert d.feature_names == ("0", "2") and d.classes == ("0", "1")
    d2 = load_data(DataConfig(spec=write_csv(tmp_path / "t.csv", text), label_column="-1"))
    assert d2.feature_names == ("0", "1") and d2.classes is not None and len(d2.classes) == 39


def test_csv_headerless_string_labels_are_not_a_header(tmp_path: Path) -> None:
    text = "".join(f"{i},{i * 2},{'ab'[i % 2]}\n" for i in range(10))
    d = load_data(DataConfig(spec=write_csv(tmp_path / "t.csv", text), label_column="2", test_fraction=0.3))
    assert len(d.train) + len(d.val) + len(d.test) == 10 and d.classes == ("a", "b")


def test_csv_without_labels_keeps_all_columns(tmp_path: Path) -> None:
    text = "a,b,c\n" + "".join(f"{i},{i * i},{-i}\n" for i in range(10))
    d = load_data(write_csv(tmp_path / "t.csv", text))
    assert d.shape == (3,) and d.train.y is None and d.classes is None and d.feature_names == ("a", "b", "c")


def test_csv_unknown_label_column_lists_columns(tmp_path: Path) -> None:
    spec = write_csv(tmp_path / "t.csv", "a,b,label\n1,2,3\n4,5,6\n7,8,9\n")
    with pytest.raises(DataError, match=r"no column 'lbl': choose --label-column from 'a', 'b', 'label'"):
        load_data(DataConfig(spec=spec, label_column="lbl"))


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b\n1,2\n3,abc\n5,6\n", r"row 3, column 'b' is not a number \('abc'\): clean the file or drop the column"),
        ("a,b\n1,2\n3,4\n,6\n", r"1 missing value\(s\) in 1 column\(s\), the first at row 4, column 'a' \(''\): fill"),
        ("a,b\n1,2\n3,nan\n5, NA\n", r"2 missing value\(s\) in 1 column\(s\), the first at row 3, column 'b' \('nan'\)"),
        ("a,b\n1,inf\n3,4\n", r"row 2, column 'b' is not a number \('inf'\)"),
        ("a,b\n1,2\n3,4,5\n", "row 3 has 3 cells but row 1 has 2"),
        ("a,b\n", "no data rows"),
        ("", "is empty"),
    ],
)
def test_csv_bad_cells(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        load_data(write_csv(tmp_path / "t.csv", text))


def test_csv_empty_label_and_missing_file(tmp_path: Path) -> None:
    spec = write_csv(tmp_path / "t.csv", "a,y\n1,x\n2,\n3,z\n")
    with pytest.raises(DataError, match="row 3, label column 'y' is empty"):
        load_data(DataConfig(spec=spec, label_column="y"))
    with pytest.raises(DataError, match="does not exist"):
        load_data(f"csv:{tmp_path / 'missing.csv'}")
