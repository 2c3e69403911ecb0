"""IDX reading, ``idx:DIR``, the named MNIST-family datasets and checked downloads (against a local server)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import socket
import struct
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from aekit.data import DataConfig, load_data
from aekit.data import idx as idx_mod
from aekit.data.download import download
from aekit.data.idx import IDX_FILES, read_idx
from aekit.errors import DataError

_TYPE_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C,
               np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def idx_bytes(array: np.ndarray) -> bytes:
    """An array encoded as IDX: magic, big-endian dims, big-endian payload."""
    code = _TYPE_CODES[array.dtype.newbyteorder("=")]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path: Path, array: np.ndarray, compress: bool | None = None) -> Path:
    """Write ``array`` as an IDX file; gzip-compressed when ``compress`` (default: when the name ends in .gz)."""
    data = idx_bytes(array)
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)
    return path


def make_idx_dir(
    directory: Path, n_train: int = 20, n_test: int = 10, gz: bool = False, seed: int = 0, size: int = 28
) -> dict[str, np.ndarray]:
    """The four MNIST files of a small random dataset in ``directory``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, size, size), dtype=np.uint8),
        "train_labels": (np.arange(n_train) % 10).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, size, size), dtype=np.uint8),
        "test_labels": (np.arange(n_test) % 10).astype(np.uint8),
    }
    directory.mkdir(parents=True, exist_ok=True)
    for role, array in arrays.items():
        write_idx(directory / (IDX_FILES[role] + (".gz" if gz else "")), array)
    return arrays


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake HOME (so ~/.cache is in tmp), no AEKIT_* overrides and no system dataset folders."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    for var in ("AEKIT_DATA", "AEKIT_MNIST_MIRROR", "AEKIT_DATA_MIRROR"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(idx_mod, "SYSTEM_DATA_DIRS", [])
    return home


# ------------------------------------------------------------------------------------------- read_idx


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
def test_read_idx_round_trip(tmp_path: Path, gz: bool, dtype: str) -> None:
    a = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    if dtype == "u1":
        a = np.arange(30, dtype=np.uint8).reshape(2, 3, 5)
    got = read_idx(write_idx(tmp_path / "a.idx", a, compress=gz))
    assert got.dtype == np.dtype(dtype) and got.dtype.isnative
    np.testing.assert_array_equal(got, a)


def test_gzip_detected_by_magic_not_extension(tmp_path: Path) -> None:
    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "plain-name", a, compress=True)), a)
    np.testing.assert_array_equal(read_idx(write_idx(tmp_path / "raw.gz", a, compress=False)), a)


def test_read_idx_result_is_writable(tmp_path: Path) -> None:
    a = read_idx(write_idx(tmp_path / "a", np.zeros((2, 2), np.uint8)))
    assert a.flags.writeable  # no read-only buffer (torch.from_numpy would warn)
    a[0, 0] = 1
    assert a[0, 0] == 1


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda b: b"\x01\x02" + b[2:], "not an IDX file"),
        (lambda b: b[:2] + b"\x07" + b[3:], "not an IDX file"),
        (lambda b: b[:3], "truncated"),
        (lambda b: b[:10], "truncated"),
        (lambda b: b[:-5], r"truncated \(expected"),
        (lambda b: b + b"\x00\x00", "trailing data"),
        (lambda b: b[:8] + struct.pack(">I", 10**6) + b[12:], "truncated"),
    ],
)
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_rejects_corrupt_files(tmp_path: Path, mutate, message: str, gz: bool) -> None:
    data = mutate(idx_bytes(np.zeros((4, 3, 3), np.uint8)))
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(gzip.compress(data) if gz else data)
    with pytest.raises(DataError, match=message) as e:
        read_idx(path)
    assert "train-images-idx3-ubyte" in str(e.value) and "download again" in str(e.value)


def test_read_idx_truncated_gzip_stream(tmp_path: Path) -> None:
    data = gzip.compress(idx_bytes(np.arange(4000, dtype=np.uint8).reshape(40, 100)))
    path = tmp_path / "x.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(path)


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "nope")


# ------------------------------------------------------------------------------------------- idx:DIR


@pytest.mark.parametrize("gz", [False, True])
def test_idx_dir_loads_with_shapes_and_splits(tmp_path: Path, gz: bool) -> None:
    arrays = make_idx_dir(tmp_path / "d", gz=gz)
    spec = f"idx:{tmp_path / 'd'}"
    d = load_data(DataConfig(spec=spec))
    assert d.name == spec and d.kind == "image"
    assert d.shape == (1, 28, 28) and d.train.x.dtype == torch.uint8
    assert (len(d.train), len(d.val), len(d.test)) == (18, 2, 10)
    assert d.classes == tuple(str(i) for i in range(10))
    np.testing.assert_array_equal(d.test.x[:, 0].numpy(), arrays["test_images"])
    np.testing.assert_array_equal(d.test.y.numpy(), arrays["test_labels"])
    # train + val together are exactly the training files, split deterministically
    d2 = load_data(DataConfig(spec=spec))
    assert torch.equal(d.train.x, d2.train.x) and torch.equal(d.val.y, d2.val.y)
    both = torch.cat([d.train.x, d.val.x])[:, 0].numpy()
    assert sorted(map(bytes, both)) == sorted(map(bytes, arrays["train_images"]))
    d3 = load_data(DataConfig(spec=spec, split_seed=5))
    assert not torch.equal(d.val.x, d3.val.x)


def test_idx_dir_other_image_size(tmp_path: Path) -> None:
    make_idx_dir(tmp_path, size=12)
    assert load_data(f"idx:{tmp_path}").shape == (1, 12, 12)


def test_idx_dir_missing_files_are_listed(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    (tmp_path / "train-images-idx3-ubyte").unlink()
    with pytest.raises(DataError) as e:
        load_data(f"idx:{tmp_path}")
    msg = str(e.value)
    assert "t10k-labels-idx1-ubyte" in msg and "train-images-idx3-ubyte" in msg
    assert "train-labels" not in msg and ".gz" in msg


def test_idx_dir_count_mismatch(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(19, np.uint8))
    with pytest.raises(DataError, match="20 images but train-labels-idx1-ubyte has 19 labels"):
        load_data(f"idx:{tmp_path}")


def test_idx_dir_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="is not a folder"):
        load_data(f"idx:{tmp_path / 'missing'}")


def test_idx_dir_rejects_non_image_files(tmp_path: Path) -> None:
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((20, 784), np.uint8))
    with pytest.raises(DataError, match=r"expected uint8 images \(N, H, W\)"):
        load_data(f"idx:{tmp_path}")


# ------------------------------------------------------------------------------------ named datasets


def test_named_dataset_from_data_dir(tmp_path: Path, clean_env: Path) -> None:
    make_idx_dir(tmp_path / "mine", gz=True)
    d = load_data(DataConfig(spec="kmnist", data_dir=str(tmp_path / "mine"), download=False))
    assert d.name == "kmnist" and d.classes[:3] == ("o", "ki", "su") and len(d.classes) == 10


def test_named_dataset_lookup_order(tmp_path: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_dir(tmp_path / "data" / "mnist", n_train=30)
    make_idx_dir(clean_env / ".cache" / "aekit" / "mnist", n_train=40)
    monkeypatch.setenv("AEKIT_DATA", str(tmp_path / "data"))
    cfg = DataConfig(spec="mnist", download=False, val_fraction=0.0)
    assert len(load_data(cfg).train) == 30  # $AEKIT_DATA/<name> before the cache
    monkeypatch.delenv("AEKIT_DATA")
    assert len(load_data(cfg).train) == 40  # then ~/.cache/aekit/<name>
    make_idx_dir(tmp_path / "sys" / "mnist", n_train=50)
    (clean_env / ".cache" / "aekit" / "mnist" / "t10k-images-idx3-ubyte").unlink()  # incomplete: skipped
    monkeypatch.setattr(idx_mod, "SYSTEM_DATA_DIRS", [tmp_path / "sys"])
    assert len(load_data(cfg).train) == 50


def test_named_dataset_without_download_says_where(clean_env: Path) -> None:
    with pytest.raises(DataError) as e:
        load_data(DataConfig(spec="mnist", download=False))
    msg = str(e.value)
    assert str(clean_env / ".cache" / "aekit" / "mnist") in msg
    assert "--data-dir" in msg and "--no-download" in msg and "train-images-idx3-ubyte" in msg


def test_named_dataset_rejects_too_many_classes(tmp_path: Path, clean_env: Path) -> None:
    make_idx_dir(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(20, 25, np.uint8))
    with pytest.raises(DataError, match="use --data idx:"):
        load_data(DataConfig(spec="fashion-mnist", data_dir=str(tmp_path), download=False))


def test_fashion_mnist_from_debian_package(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    system = Path("/usr/share/datasets")
    if not (system / "fashion-mnist" / "train-images-idx3-ubyte.gz").exists():
        pytest.skip("the Debian dataset-fashion-mnist package is not installed")
    monkeypatch.setattr(idx_mod, "SYSTEM_DATA_DIRS", [system])
    d = load_data(DataConfig(spec="fashion-mnist", download=False))
    assert (len(d.train), len(d.val), len(d.test)) == (55000, 5000, 10000)
    assert d.shape == (1, 28, 28) and d.train.x.dtype == torch.uint8
    assert d.classes[0] == "T-shirt/top" and d.classes[-1] == "Ankle boot"
    assert torch.bincount(d.test.y).tolist() == [1000] * 10


# ------------------------------------------------------------------------------------------- download


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A local HTTP server: (base URL, folder it serves)."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(_QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", root
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _serve_mnist(root: Path, monkeypatch: pytest.MonkeyPatch, n_train: int = 20) -> dict[str, np.ndarray]:
    """Generated .gz files under ``root/ok/`` and their md5s patched into the checksum table."""
    arrays = make_idx_dir(root / "ok", n_train=n_train, gz=True)
    md5 = {p.name: hashlib.md5(p.read_bytes()).hexdigest() for p in (root / "ok").iterdir()}
    monkeypatch.setitem(idx_mod.MD5, "mnist", md5)
    return arrays


def _unused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


def test_download_named_dataset(server, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    arrays = _serve_mnist(root, monkeypatch)
    monkeypatch.setitem(idx_mod.MIRRORS, "mnist", [url + "ok/"])
    d = load_data(DataConfig(spec="mnist"))
    assert len(d.test) == 10 and d.shape == (1, 28, 28)
    np.testing.assert_array_equal(d.test.x[:, 0].numpy(), arrays["test_images"])
    cache = clean_env / ".cache" / "aekit" / "mnist"
    assert sorted(p.name for p in cache.iterdir()) == sorted(f + ".gz" for f in IDX_FILES.values())
    # a second load uses the cache, even with no mirror reachable
    monkeypatch.setitem(idx_mod.MIRRORS, "mnist", [_unused_url()])
    assert torch.equal(load_data(DataConfig(spec="mnist")).test.x, d.test.x)


def test_download_into_data_dir(server, tmp_path: Path, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    _serve_mnist(root, monkeypatch)
    monkeypatch.setitem(idx_mod.MIRRORS, "mnist", [url + "ok/"])
    load_data(DataConfig(spec="mnist", data_dir=str(tmp_path / "dd")))
    assert len(list((tmp_path / "dd" / "mnist").glob("*.gz"))) == 4  # one sub-folder per dataset: no clashes
    assert not (clean_env / ".cache").exists()


def test_download_falls_back_to_next_mirror(server, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    _serve_mnist(root, monkeypatch)
    monkeypatch.setitem(idx_mod.MIRRORS, "mnist", [url + "missing/", url + "ok/"])
    assert len(load_data(DataConfig(spec="mnist")).test) == 10


def test_download_mirror_env_override(server, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    _serve_mnist(root, monkeypatch)
    monkeypatch.setitem(idx_mod.MIRRORS, "mnist", [_unused_url()])
    monkeypatch.setenv("AEKIT_DATA_MIRROR", url + "ok")  # no trailing slash on purpose
    assert len(load_data(DataConfig(spec="mnist")).test) == 10


def test_download_checksum_mismatch_leaves_nothing(server, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, root = server
    _serve_mnist(root, monkeypatch)
    monkeypatch.setitem(idx_mod.MD5["mnist"], "t10k-images-idx3-ubyte.gz", "0" * 32)
    monkeypatch.setitem(idx_mod.MIRRORS, "mnist", [url + "ok/"])
    with pytest.raises(DataError) as e:
        load_data(DataConfig(spec="mnist"))
    msg = str(e.value)
    assert "checksum mismatch" in msg and "t10k-images-idx3-ubyte.gz" in msg and "0" * 32 in msg
    cache = clean_env / ".cache" / "aekit" / "mnist"
    assert not (cache / "t10k-images-idx3-ubyte.gz").exists()
    assert not [p for p in cache.iterdir() if "part" in p.name]


def test_download_all_mirrors_fail(server, clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url, _ = server
    monkeypatch.setitem(idx_mod.MIRRORS, "mnist", [url + "a/", url + "b/"])
    with pytest.raises(DataError, match="all 2 mirrors failed.*HTTP 404.*--data-dir"):
        load_data(DataConfig(spec="mnist"))


def test_download_unreachable_server(tmp_path: Path) -> None:
    bad = _unused_url() + "train-images-idx3-ubyte.gz"
    with pytest.raises(DataError) as e:
        download(bad, tmp_path / "f.gz", timeout=5)
    assert bad in str(e.value) and "--data-dir" in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_download_sha256(server, tmp_path: Path) -> None:
    url, root = server
    (root / "blob").write_bytes(b"hello" * 1000)
    good = hashlib.sha256(b"hello" * 1000).hexdigest()
    dest = tmp_path / "dl"
    out = download(url + "blob", dest / "blob", sha256=good.upper())
    assert out.read_bytes() == b"hello" * 1000
    with pytest.raises(DataError, match="checksum mismatch"):
        download(url + "blob", dest / "other", sha256="ab" * 32)
    assert sorted(p.name for p in dest.iterdir()) == ["blob"]


# ------------------------------------------------------------------------------ resumed and bounded downloads


class _RangeHandler(http.server.BaseHTTPRequestHandler):
    """``/blob`` (honours ``Range`` when ``ranges``), ``/cut`` (announces the blob, sends half and hangs up),
    ``/endless`` (a chunked body that never ends).  Every request's ``Range`` header is recorded."""

    blob = b""
    ranges = True
    seen: list[str | None] = []

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        type(self).seen.append(self.headers.get("Range"))
        blob = type(self).blob
        if self.path == "/endless":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            chunk = b"x" * 4096
            try:
                while True:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            except OSError:  # the client stopped reading
                return
        if self.path == "/cut":
            self.send_response(200)
            self.send_header("Content-Length", str(len(blob)))
            self.end_headers()
            self.wfile.write(blob[: len(blob) // 2])
            self.close_connection = True
            return
        start = 0
        m = self.headers.get("Range")
        if m and type(self).ranges and m.startswith("bytes=") and m.endswith("-"):
            start = int(m[len("bytes="):-1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(blob) - 1}/{len(blob)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(blob) - start))
        self.end_headers()
        self.wfile.write(blob[start:])


@pytest.fixture
def range_server() -> Iterator[tuple[str, type[_RangeHandler]]]:
    handler = type("Handler", (_RangeHandler,), {"blob": bytes(range(256)) * 400, "ranges": True, "seen": []})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/", handler
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def test_download_resumes_a_partial_file(range_server, tmp_path: Path) -> None:
    url, handler = range_server
    blob = handler.blob
    (tmp_path / ".blob.part").write_bytes(blob[:40000])  # what a killed download left
    out = download(url + "blob", tmp_path / "blob", sha256=hashlib.sha256(blob).hexdigest())
    assert out.read_bytes() == blob
    assert handler.seen == ["bytes=40000-"]  # only the rest was asked for
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


def test_a_complete_partial_file_is_moved_into_place_without_a_request(range_server, tmp_path: Path) -> None:
    url, handler = range_server  # killed after the last byte, before the rename: a Range request would get 416
    (tmp_path / ".blob.part").write_bytes(handler.blob)
    out = download(url + "blob", tmp_path / "blob", sha256=hashlib.sha256(handler.blob).hexdigest())
    assert out.read_bytes() == handler.blob and handler.seen == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


def test_download_restarts_when_the_server_ignores_range(range_server, tmp_path: Path) -> None:
    url, handler = range_server
    handler.ranges = False
    (tmp_path / ".blob.part").write_bytes(b"stale bytes of something else")
    out = download(url + "blob", tmp_path / "blob", md5=hashlib.md5(handler.blob).hexdigest())
    assert out.read_bytes() == handler.blob
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


def test_a_cut_download_keeps_its_part_and_the_retry_resumes_it(range_server, tmp_path: Path) -> None:
    url, handler = range_server
    sha = hashlib.sha256(handler.blob).hexdigest()
    with pytest.raises(DataError, match="cut short .* retry to resume") as e:
        download(url + "cut", tmp_path / "blob", sha256=sha, timeout=10)
    assert "\n" not in str(e.value)
    half = len(handler.blob) // 2
    assert (tmp_path / ".blob.part").read_bytes() == handler.blob[:half]
    assert download(url + "blob", tmp_path / "blob", sha256=sha).read_bytes() == handler.blob
    assert handler.seen[-1] == f"bytes={half}-"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


def test_a_resumed_file_with_a_wrong_checksum_is_removed(range_server, tmp_path: Path) -> None:
    url, handler = range_server
    (tmp_path / ".blob.part").write_bytes(b"\0" * 1000)  # a corrupt start: the whole file fails the checksum
    with pytest.raises(DataError, match="checksum mismatch"):
        download(url + "blob", tmp_path / "blob", sha256=hashlib.sha256(handler.blob).hexdigest())
    assert list(tmp_path.iterdir()) == []  # neither the file nor its part: the next attempt starts clean


def test_an_endless_body_stops_at_the_size_cap(range_server, tmp_path: Path) -> None:
    url, _ = range_server
    with pytest.raises(DataError, match=r"more than the 100000 bytes expected at most") as e:
        download(url + "endless", tmp_path / "f.gz", md5="0" * 32, max_bytes=100_000, timeout=10)
    assert "\n" not in str(e.value)
    assert list(tmp_path.iterdir()) == []


def test_an_announced_oversized_body_is_refused_before_reading(range_server, tmp_path: Path) -> None:
    url, handler = range_server
    with pytest.raises(DataError, match=rf"is {len(handler.blob)} bytes, more than the 1000 expected"):
        download(url + "blob", tmp_path / "blob", max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_partial_files_of_older_versions_are_removed(range_server, tmp_path: Path) -> None:
    url, handler = range_server
    (tmp_path / ".blob.k2j_x9ab.part").write_bytes(b"x" * 100)  # mkstemp-named: never resumable
    download(url + "blob", tmp_path / "blob")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob"]


def test_the_checksum_error_is_reported_once(server, clean_env: Path, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    url, root = server
    _serve_mnist(root, monkeypatch)
    monkeypatch.setitem(idx_mod.MD5["mnist"], "t10k-images-idx3-ubyte.gz", "0" * 32)
    monkeypatch.setitem(idx_mod.MIRRORS, "mnist", [url + "ok/"])
    with caplog.at_level("WARNING"), pytest.raises(DataError, match="checksum mismatch"):
        load_data(DataConfig(spec="mnist"))
    assert not [r for r in caplog.records if "checksum mismatch" in r.getMessage()]  # the error is the one line
