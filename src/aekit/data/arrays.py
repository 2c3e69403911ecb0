"""Array files: ``npy:FILE``, ``npz:FILE`` and ``csv:FILE``.

Arrays are interpreted by shape and dtype (:func:`as_features`): 2-D numbers are a table (N, D); 3-D/4-D
arrays are images, uint8 (0..255) or floats in [0, 1], laid out (N, H, W), (N, C, H, W) or (N, H, W, C) with
C = 1 or 3.  Labels (:func:`encode_labels`) may be non-negative class ids or class names.  CSV files are
numeric tables with an optional header row; ``--label-column`` picks the column that holds labels.
"""

from __future__ import annotations

import csv
import logging
import os
import zipfile
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import DataError
from .base import DataConfig, Dataset, Source, check_class_count, make_dataset

logger = logging.getLogger(__name__)

X_KEYS = ("x", "X", "data", "images")
Y_KEYS = ("y", "Y", "labels", "targets")
SPLIT_KEYS = ("x_train", "y_train", "x_test", "y_test")  # Keras-style archives with their own test split
_LAYOUT_HINT = "provide uint8 images (N, H, W) / (N, C, H, W) / (N, H, W, C) with C = 1 or 3, or a 2-D (N, D) table"

Kind = Literal["image", "table"]


# ------------------------------------------------------------------------------------------- conversion


FLOAT32_MAX = float(np.finfo(np.float32).max)


def _check_finite(x: np.ndarray, desc: str) -> None:
    """No NaN or inf, and (for wider floats) nothing beyond float32's range, which becomes inf in training."""
    if x.dtype.kind != "f":
        return
    bad = ~np.isfinite(x)
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in np.unravel_index(int(np.argmax(bad.reshape(-1))), x.shape))
        raise DataError(
            f"{desc} contains {count} NaN/inf value(s), the first at index {first}: remove or impute them"
        )
    if x.dtype.itemsize > 4 and x.size:
        big = np.abs(x) > FLOAT32_MAX
        if big.any():
            first = tuple(int(i) for i in np.unravel_index(int(np.argmax(big.reshape(-1))), x.shape))
            raise DataError(f"{desc} holds {int(big.sum())} value(s) beyond float32's range (±{FLOAT32_MAX:.3g}), "
                            f"the first {float(x[first]):g} at index {first}: rescale the data")


def as_features(x: np.ndarray, desc: str) -> tuple[Kind, np.ndarray]:
    """Classify ``x`` as a table (N, D) or uint8 images (N, C, H, W), converting where unambiguous."""
    if x.dtype.kind not in "biuf":
        raise DataError(f"{desc} has dtype {x.dtype}, not numbers: {_LAYOUT_HINT}")
    if x.ndim >= 2 and 0 in x.shape[1:]:
        raise DataError(f"{desc} has shape {x.shape}: its samples hold no values; {_LAYOUT_HINT}")
    if x.ndim == 2:
        _check_finite(x, desc)
        return "table", x
    if x.ndim not in (3, 4):
        hint = "reshape it to (N, D), e.g. x.reshape(-1, 1)" if x.ndim == 1 else _LAYOUT_HINT
        raise DataError(f"{desc} has shape {x.shape}: {hint}")
    channels_last = False
    if x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            channels_last = True
        elif x.shape[1] not in (1, 3):
            raise DataError(f"{desc} has shape {x.shape}, with neither 1 nor 3 channels: {_LAYOUT_HINT}")
    if x.dtype.kind == "b":
        x = x.astype(np.uint8) * np.uint8(255)
    elif x.dtype != np.uint8:
        _check_finite(x, desc)
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if x.dtype.kind == "f":
            if lo < 0.0 or hi > 1.0:
                raise DataError(f"{desc} holds float images with values in [{lo:g}, {hi:g}], not [0, 1]: {_LAYOUT_HINT}")
            x = np.rint(np.asarray(x, dtype=np.float32) * 255.0).astype(np.uint8)
        else:
            if lo < 0 or hi > 255:
                raise DataError(f"{desc} holds {x.dtype} images with values in [{lo:g}, {hi:g}]: {_LAYOUT_HINT}")
            x = x.astype(np.uint8)
    if channels_last:
        x = np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return "image", x


def encode_labels(ys: list[np.ndarray], desc: str) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Labels of one or more splits as int64 class ids, with class names shared by all splits.

    Non-negative whole numbers are kept as ids (classes ``"0"`` … ``"max"``); names, and whole numbers
    with negatives among them, are mapped to ids in sorted order.
    """
    flat = [np.asarray(y).reshape(-1) if np.ndim(y) == 2 and np.shape(y)[1] == 1 else np.asarray(y) for y in ys]
    for y in flat:
        if y.ndim != 1:
            raise DataError(f"{desc} labels have shape {y.shape}: provide one label per sample, shape (N,)")
    lengths = [len(y) for y in flat]
    allv = np.concatenate(flat) if flat else np.zeros(0, dtype=np.int64)
    if allv.dtype.kind in "US":
        names, ids = np.unique(allv, return_inverse=True)
        classes = tuple(str(n) for n in names)
    elif allv.dtype.kind in "biuf":
        if allv.dtype.kind == "f":
            _check_finite(allv, f"{desc} labels")
            if not np.all(allv == np.round(allv)):
                example = allv[np.argmax(allv != np.round(allv))]
                raise DataError(
                    f"{desc} labels are not whole numbers (e.g. {example:g}): labels must be class ids or names"
                )
        allv = allv.astype(np.int64)
        if allv.size and allv.min() < 0:
            values, ids = np.unique(allv, return_inverse=True)
            classes = tuple(str(v) for v in values)
        else:
            ids = allv
            if allv.size:
                check_class_count(int(allv.max()), desc)
            classes = tuple(str(i) for i in range(int(allv.max()) + 1 if allv.size else 0))
    else:
        raise DataError(f"{desc} labels have dtype {allv.dtype}: provide integer class ids or class names")
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    return list(np.split(ids, np.cumsum(lengths)[:-1])), classes


def _dataset(
    name: str,
    cfg: DataConfig,
    x: np.ndarray,
    y: np.ndarray | None,
    x_test: np.ndarray | None = None,
    y_test: np.ndarray | None = None,
) -> Dataset:
    """Wrap arrays (and an optional own test split) as a :class:`Dataset`."""
    kind, x = as_features(x, name)
    if x_test is not None:
        test_kind, x_test = as_features(x_test, f"{name} (test split)")
        if test_kind != kind or x_test.shape[1:] != x.shape[1:]:
            raise DataError(
                f"{name}: train samples have shape {x.shape[1:]} but test samples {x_test.shape[1:]}: "
                "save matching arrays"
            )
    if x_test is not None and (y is None) != (y_test is None):
        raise DataError(f"{name}: labels are given for only one of train/test: give both or neither")
    classes = None
    if y is not None:
        ys = [y] if y_test is None else [y, y_test]
        encoded, classes = encode_labels(ys, name)
        for split, xs, ye in (("train", x, encoded[0]), ("test", x_test, encoded[-1])):
            if xs is not None and len(ye) != len(xs):
                raise DataError(
                    f"{name}: {len(xs)} {split} samples but {len(ye)} labels: save one label per sample"
                )
        y = encoded[0]
        y_test = encoded[1] if y_test is not None else None
    logger.info("loaded %s: %s data of shape %s", name, kind, x.shape)
    return make_dataset(name, kind, cfg, x, y, x_test, y_test, classes=classes)


# ------------------------------------------------------------------------------------------- npy / npz


def _load_error(path: Path, err: Exception, fmt: str) -> DataError:
    if isinstance(err, FileNotFoundError):
        return DataError(f"{path} does not exist: check the path in --data {fmt}:FILE")
    if isinstance(err, IsADirectoryError):
        return DataError(f"{path} is a folder: use --data {fmt}:FILE with a .{fmt} file")
    # numpy's own text for a non-.npy file suggests allow_pickle=True: loading pickles runs code, so not passed on
    detail = "not a NumPy file, or one holding Python objects" if "pickle" in str(err) else str(err)
    return DataError(
        f"cannot load {path} as .{fmt} ({detail}): save numeric arrays with "
        f"numpy.{'save' if fmt == 'npy' else 'savez'} (object arrays / pickles are not supported)"
    )


def load_npy(arg: str | None, cfg: DataConfig) -> Dataset:
    """``npy:FILE``: one array, memory-mapped; uint8 (or [0, 1] float) images or a 2-D table, no labels."""
    if not arg:
        raise DataError("npy needs a file: use --data npy:FILE")
    path = Path(arg).expanduser()
    try:
        x = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise _load_error(path, e, "npy") from e
    if not isinstance(x, np.ndarray):
        x.close()
        raise DataError(f"{path} is an .npz archive, not an .npy array: use --data npz:{arg}")
    from .stream import budget_of

    budget = budget_of(cfg)
    if budget is not None and x.nbytes > budget:  # larger than --memory-budget: streamed in shuffled chunks
        from .stream import NpyRows, streamed_dataset

        return streamed_dataset(f"npy:{arg}", cfg, NpyRows(path), budget=budget)
    return _dataset(f"npy:{arg}", cfg, x, None)


def _pick(keys: list[str], preferred: tuple[str, ...]) -> str | None:
    return next((k for k in preferred if k in keys), None)


_Arrays = tuple[np.ndarray, np.ndarray | None, np.ndarray | None, np.ndarray | None]


def _npz_arrays(z: np.lib.npyio.NpzFile, path: Path, name: str) -> _Arrays:
    """(x, y, x_test, y_test) from an open archive, chosen by key names."""
    keys = list(z.files)
    if not keys:
        raise DataError(f"{path} holds no arrays: save them with numpy.savez(path, x=..., y=...)")
    if "x_train" in keys and "x_test" in keys:
        if ("y_train" in keys) != ("y_test" in keys):
            raise DataError(f"{path} has labels for only one of train/test: save both y_train and y_test")
        labelled = "y_train" in keys
        logger.info("%s: using x_train/x_test%s", name, " with labels" if labelled else "")
        return (
            z["x_train"],
            z["y_train"] if labelled else None,
            z["x_test"],
            z["y_test"] if labelled else None,
        )
    y_key = _pick(keys, Y_KEYS)
    x_key = _pick(keys, X_KEYS) or next((k for k in keys if k != y_key), None)
    if x_key is None:
        raise DataError(f"{path} holds only labels ({y_key!r}): add the samples as 'x'")
    logger.info("%s: samples from %r, labels from %r", name, x_key, y_key)
    return z[x_key], (z[y_key] if y_key else None), None, None


def load_npz(arg: str | None, cfg: DataConfig) -> Dataset:
    """``npz:FILE``: ``x``/``X``/``data``/``images`` (else the first array) and optional ``y``/``labels``/``targets``.

    Archives with ``x_train`` and ``x_test`` (and ``y_train``/``y_test``) keep their own test split.
    """
    if not arg:
        raise DataError("npz needs a file: use --data npz:FILE")
    path = Path(arg).expanduser()
    name = f"npz:{arg}"
    try:
        with open(path, "rb") as fh:  # our own handle: np.load leaks its file when the zip is corrupt
            z = np.load(fh, allow_pickle=False)
            if isinstance(z, np.ndarray):
                raise DataError(f"{path} is an .npy array, not an .npz archive: use --data npy:{arg}")
            with z:
                x, y, x_test, y_test = _npz_arrays(z, path, name)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise _load_error(path, e, "npz") from e
    return _dataset(name, cfg, x, y, x_test, y_test)


# ------------------------------------------------------------------------------------------------- csv


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _read_rows(path: Path) -> tuple[list[list[str]], list[int]]:
    """Non-blank rows of a CSV file (delimiter sniffed among , ; tab |) and their line numbers."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            sample = f.read(1 << 16)
            f.seek(0)
            try:
                dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(sample, delimiters=",;\t|")
            except csv.Error:
                dialect = csv.excel
            reader = csv.reader(f, dialect, skipinitialspace=True)
            rows, lines = [], []
            for row in reader:
                if row:
                    rows.append(row)
                    lines.append(reader.line_num)
    except FileNotFoundError as e:
        raise DataError(f"{path} does not exist: check the path in --data csv:FILE") from e
    except UnicodeDecodeError as e:
        raise DataError(f"{path} is not UTF-8 text ({e.reason}): save the csv as UTF-8") from e
    except (OSError, csv.Error) as e:
        raise DataError(f"cannot read {path} as csv ({e}): check the file") from e
    return rows, lines


_MISSING = ("", "na", "n/a", "nan", "null", "none", "?")  # cells read as missing values (after strip, lower-case)


def _has_header(rows: list[list[str]]) -> bool:
    """A first row with a non-numeric cell above a numeric one (or with no numeric cell at all) is a header."""
    first = [_is_number(c) for c in rows[0]]
    if not any(first):
        return True
    if len(rows) < 2:
        return False
    second = [_is_number(c) for c in rows[1]]
    return any(not a and b for a, b in zip(first, second, strict=False))


def _column_list(names: list[str], limit: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", … ({len(names)} in all)" if len(names) > limit else "")


def _label_index(spec: str, names: list[str], path: Path) -> int:
    if spec in names:
        return names.index(spec)
    try:
        i = int(spec)
    except ValueError:
        i = None
    if i is not None and -len(names) <= i < len(names):
        return i % len(names)
    raise DataError(
        f"csv {path} has no column {spec!r}: choose --label-column from {_column_list(names)} (or a 0-based index)"
    )


def _reject_text_columns(path: Path, features: np.ndarray, text: np.ndarray, missing: np.ndarray,
                         names: list[str], label_column: str | None) -> None:
    """A feature column of text (no number in it besides missing cells) is most often the labels: say so."""
    import shlex

    for c in np.flatnonzero(text.any(0)):
        if not (text[:, c] | missing[:, c]).all():
            continue  # numbers with a few stray words: the cell-level message below names the first one
        first = str(features[int(np.flatnonzero(text[:, c])[0]), c])
        fix = (f"if it holds the labels, pass --label-column {shlex.quote(names[c])}, otherwise drop the column"
               if label_column is None else f"drop the column (--label-column is {label_column!r})")
        raise DataError(f"csv {path}: column {names[c]!r} holds text, not numbers ({first!r}): {fix}")


def read_csv(
    path: str | os.PathLike[str], label_column: str | None = None
) -> tuple[np.ndarray, np.ndarray | None, tuple[str, ...]]:
    """Parse a numeric CSV: (float64 features (N, D), raw label strings (N,) or None, feature names)."""
    path = Path(path).expanduser()
    rows, lines = _read_rows(path)
    if not rows:
        raise DataError(f"csv {path} is empty: provide a header row (optional) and numeric rows")
    header = _has_header(rows)
    ncols = len(rows[0])
    names = [c.strip() or str(i) for i, c in enumerate(rows[0])] if header else [str(i) for i in range(ncols)]
    data, data_lines = (rows[1:], lines[1:]) if header else (rows, lines)
    if not data:
        raise DataError(f"csv {path} has a header but no data rows: add rows of numbers")
    for row, line in zip(data, data_lines, strict=True):
        if len(row) != ncols:
            raise DataError(f"csv {path}: row {line} has {len(row)} cells but row {lines[0]} has {ncols}: fix the file")
    cells = np.array(data, dtype=str)
    label_idx = _label_index(label_column, names, path) if label_column is not None else None
    feature_cols = [i for i in range(ncols) if i != label_idx]
    if not feature_cols:
        raise DataError(f"csv {path} has no columns besides the label column: add feature columns")
    features = cells[:, feature_cols]
    try:
        x = features.astype(np.float64)
    except ValueError:  # slow path, only to locate the offending cell
        x = np.array([[float(c) if _is_number(c) else np.nan for c in row] for row in features], dtype=np.float64)
    bad = ~np.isfinite(x)
    if bad.any():
        missing = np.isin(np.char.lower(np.char.strip(features)), _MISSING)
        _reject_text_columns(path, features, bad & ~missing, missing, [names[i] for i in feature_cols],
                             label_column)
        if missing.any():  # blanks and NA-like cells: say how many, not only the first
            r, c = (int(i) for i in np.argwhere(missing)[0])
            raise DataError(
                f"csv {path}: {int(missing.sum())} missing value(s) in {int(missing.any(0).sum())} column(s), the "
                f"first at row {data_lines[r]}, column {names[feature_cols[c]]!r} ({str(features[r, c])!r}): "
                "fill them in (e.g. with the column mean) or drop those rows or columns"
            )
        r, c = (int(i) for i in np.argwhere(bad)[0])
        raise DataError(
            f"csv {path}: row {data_lines[r]}, column {names[feature_cols[c]]!r} is not a number "
            f"({str(features[r, c])!r}): clean the file or drop the column"
        )
    big = np.abs(x) > FLOAT32_MAX  # becomes inf in float32, the precision aekit trains in
    if big.any():
        r, c = (int(i) for i in np.argwhere(big)[0])
        raise DataError(
            f"csv {path}: row {data_lines[r]}, column {names[feature_cols[c]]!r} is {x[r, c]:g}, beyond float32's "
            f"range (±{FLOAT32_MAX:.3g}): rescale the column"
        )
    labels = None
    if label_idx is not None:
        labels = np.char.strip(cells[:, label_idx])
        empty = np.flatnonzero(labels == "")
        if empty.size:
            raise DataError(
                f"csv {path}: row {data_lines[int(empty[0])]}, label column {names[label_idx]!r} is empty: "
                "fill it in or drop the row"
            )
        if all(_is_number(v) for v in np.unique(labels)):
            labels = labels.astype(np.float64)
    return x, labels, tuple(names[i] for i in feature_cols)


def load_csv(arg: str | None, cfg: DataConfig) -> Dataset:
    """``csv:FILE``: a numeric table (standardised with training statistics); labels from ``--label-column``."""
    if not arg:
        raise DataError("csv needs a file: use --data csv:FILE")
    name = f"csv:{arg}"
    x, labels, feature_names = read_csv(arg, cfg.label_column)
    y = classes = None
    if labels is not None:
        (y,), classes = encode_labels([labels], name)
    logger.info("loaded %s: %d rows, %d features", name, x.shape[0], x.shape[1])
    return make_dataset(name, "table", cfg, x, y, classes=classes, feature_names=feature_names)


SOURCES: dict[str, Source] = {
    "npy": Source(load_npy, True, "a NumPy .npy array: uint8 (N,[C,]H,W[,C]) images or a 2-D float table"),
    "npz": Source(load_npz, True, "a NumPy .npz with x (and optionally y) arrays"),
    "csv": Source(load_csv, True, "a numeric CSV table (optional header; --label-column for labels)"),
}
