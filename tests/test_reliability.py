"""Issue 19: run directories under misuse — the lock, validation before anything is created, the completeness
marker, weights integrity, strict JSON (and the explorer's defences, in the last section)."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import aekit
from aekit.cli import main
from aekit.errors import ConfigError, RunError
from aekit.fileio import dumps_json, lock_directory
from aekit.train import TrainConfig, load_run

QUICK = {"hidden": "32", "latent_dim": 4, "batch_size": 64, "progress": False, "report": False}
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A complete 2-epoch ae run (copy it before changing it)."""
    path = tmp_path_factory.mktemp("rel") / "done"
    aekit.train("ae", "digits", path, epochs=2, **QUICK)
    return path


@pytest.fixture
def run_copy(finished, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(finished, dst)
    return dst


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("aekit: error: "), err
    assert "Traceback" not in err
    return lines[0]


# ----------------------------------------------------------------------------------------------- 1. the lock


def test_lock_directory_is_exclusive_and_names_the_holder(tmp_path):
    lock = lock_directory(tmp_path / "r")
    try:
        with pytest.raises(RunError, match=rf"in use by process {os.getpid()}"):
            lock_directory(tmp_path / "r")
    finally:
        lock.release()
    lock_directory(tmp_path / "r").release()  # free again once released


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    return env


@pytest.mark.slow
def test_second_training_on_a_run_directory_exits_2_and_the_first_finishes(tmp_path, capsys):
    out = tmp_path / "R"
    cmd = [sys.executable, "-m", "aekit", "-q", "train", "--model", "ae", "--hidden", "64", "--latent-dim", "4",
           "--batch-size", "16", "--epochs", "12", "--no-report", "--out", str(out)]
    first = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        deadline = time.monotonic() + 120
        while not ((out / ".lock").exists() and (out / ".lock").read_text().strip() and (out / "config.json").exists()):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the first training never took its lock"
            time.sleep(0.05)
        # the second writer: an overwrite with another config, while the first is training
        rc = main(["-q", "train", "--model", "ae", "--hidden", "16", "--latent-dim", "3", "--epochs", "1",
                   "--no-report", "--overwrite", "--out", str(out)])
        line = one_error_line(capsys.readouterr().err)
        assert rc == 2 and f"in use by process {first.pid}" in line
        assert first.poll() is None, "the first training should still be running (make it slower)"
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    run = load_run(out)  # A's config and A's weights
    assert run.model.latent_dim == 4 and run.train_config.epochs == 12
    assert json.loads((out / "config.json").read_text())["train"]["epochs"] == 12


def test_resume_takes_the_lock_too(run_copy, capsys):
    lock = lock_directory(run_copy)
    try:
        assert main(["-q", "train", "--resume", str(run_copy), "--epochs", "3", "--no-report"]) == 2
        assert "in use by process" in one_error_line(capsys.readouterr().err)
    finally:
        lock.release()
    assert json.loads((run_copy / "config.json").read_text())["train"]["epochs"] == 2  # nothing changed


# ----------------------------------------------------------------------------------------------- 2. validation


@pytest.mark.parametrize("flags", [
    ["--weight-decay", "-1"], ["--weight-decay", "nan"], ["--seed", "-1"], ["--split-seed", "-1"],
    ["--max-val", "-1"], ["--grad-clip", "-1"], ["--lr-warmup-epochs", "-1"], ["--beta-warmup-epochs", "-1"],
    ["--lr", "inf"], ["--val-fraction", "nan"],
])
def test_out_of_range_options_fail_before_anything_is_created(tmp_path, capsys, flags):
    out = tmp_path / "r"
    assert main(["-q", "train", "--model", "ae", *flags, "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_seed_range_in_the_config():
    with pytest.raises(ConfigError, match="--seed"):
        TrainConfig(seed=10**23)


@pytest.mark.parametrize("where", ["file", "under-file", "proc"])
def test_unusable_out_is_one_line_and_creates_nothing(tmp_path, capsys, where):
    f = tmp_path / "file.txt"
    f.write_text("x")
    out = {"file": f, "under-file": f / "run", "proc": Path("/proc/aekit-test/run")}[where]
    assert main(["-q", "train", "--model", "ae", "--epochs", "1", "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"] and f.read_text() == "x"


@pytest.mark.parametrize("flags", [["--out", "elsewhere"], ["--model", "vae"], ["--data", "cells"],
                                   ["--overwrite"]])
def test_resume_refuses_flags_it_would_ignore(run_copy, capsys, flags):
    before = (run_copy / "config.json").read_bytes()
    assert main(["-q", "train", "--resume", str(run_copy), *flags]) == 2
    assert "ignored" in one_error_line(capsys.readouterr().err)
    assert (run_copy / "config.json").read_bytes() == before


def test_resume_refuses_fewer_epochs_than_trained(run_copy, capsys):
    before = (run_copy / "config.json").read_bytes()
    assert main(["-q", "train", "--resume", str(run_copy), "--epochs", "1"]) == 2
    assert "already trained 2 epochs" in one_error_line(capsys.readouterr().err)
    assert (run_copy / "config.json").read_bytes() == before
    load_run(run_copy)  # still complete


def test_a_run_of_a_newer_aekit_loads_with_a_warning(run_copy, caplog):
    cfg = json.loads((run_copy / "config.json").read_text())
    cfg["aekit_version"] = "99.0.0"
    (run_copy / "config.json").write_text(json.dumps(cfg))
    with caplog.at_level(logging.WARNING):
        load_run(run_copy)
    assert any("newer than this aekit" in r.getMessage() for r in caplog.records)


# ----------------------------------------------------------------------------------------------- 3. completeness


def test_a_fresh_run_is_complete_only_with_its_marker(finished):
    cfg = json.loads((finished / "config.json").read_text())
    marker = json.loads((finished / "complete.json").read_text())
    assert cfg["layout"] == 2 and len(marker["weights_sha256"]) == 64 and marker["evaluation"] is True


def test_a_kill_before_evaluation_leaves_an_incomplete_run_that_resume_finishes(tmp_path, monkeypatch):
    import aekit.evaluate

    def killed(*a, **kw):
        raise KeyboardInterrupt

    out = tmp_path / "r"
    with monkeypatch.context() as m:
        m.setattr(aekit.evaluate, "evaluate", killed)
        with pytest.raises(KeyboardInterrupt):
            aekit.train("ae", "digits", out, epochs=1, **QUICK)
    assert (out / "model.safetensors").exists() and not (out / "complete.json").exists()
    with pytest.raises(RunError, match="incomplete.*--resume"):
        load_run(out)
    aekit.train(resume=out, report=False, progress=False)
    assert (out / "evaluation.json").exists()
    load_run(out)


def test_runs_of_older_aekit_without_a_marker_still_load(run_copy):
    cfg = json.loads((run_copy / "config.json").read_text())
    del cfg["layout"]
    (run_copy / "config.json").write_text(json.dumps(cfg))
    (run_copy / "complete.json").unlink()
    load_run(run_copy)
    (run_copy / "model.safetensors").unlink()
    with pytest.raises(RunError, match="incomplete"):
        load_run(run_copy)


def test_resume_removes_stale_temporaries(run_copy):
    stale = run_copy / ".metrics.csv.k1ll3d.tmp"
    stale.write_text("half")
    aekit.train(resume=run_copy, epochs=3, report=False, progress=False)
    assert not stale.exists()
    load_run(run_copy)


# ----------------------------------------------------------------------------------------------- 4. weights


def test_changed_weights_fail_the_sha256_check(run_copy, capsys):
    w = run_copy / "model.safetensors"
    data = bytearray(w.read_bytes())
    for i in (len(data) - 5, len(data) - 400, len(data) - 1000):  # three bit flips in the tensor data
        data[i] ^= 0x10
    w.write_bytes(bytes(data))
    with pytest.raises(RunError, match="SHA-256"):
        load_run(run_copy)
    assert main(["evaluate", str(run_copy), "--json"]) == 2
    one_error_line(capsys.readouterr().err)


def _old_layout_with(run: Path, change) -> None:
    """Rewrite the weights of ``run`` (made an old-layout run: no marker to catch it) with ``change``."""
    cfg = json.loads((run / "config.json").read_text())
    del cfg["layout"]
    (run / "config.json").write_text(json.dumps(cfg))
    (run / "complete.json").unlink()
    w = run / "model.safetensors"
    tensors = load_file(str(w))
    save_file({k: change(v) if v.is_floating_point() else v for k, v in tensors.items()}, str(w))


def test_non_finite_weights_are_refused(run_copy, capsys):
    _old_layout_with(run_copy, lambda t: torch.full_like(t, math.nan))
    assert main(["evaluate", str(run_copy), "--json"]) == 2
    assert "NaN" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16])
def test_weights_of_another_dtype_are_refused(run_copy, capsys, dtype):
    _old_layout_with(run_copy, lambda t: t.to(dtype))
    assert main(["evaluate", str(run_copy)]) == 2
    assert "wrong type" in one_error_line(capsys.readouterr().err)


def test_int_weights_are_refused(run_copy):
    _old_layout_with(run_copy, lambda t: t.to(torch.int32))
    with pytest.raises(RunError, match="wrong type"):
        load_run(run_copy)


def test_evaluate_json_never_prints_nan(finished, monkeypatch, capsys):
    import aekit.evaluate

    monkeypatch.setattr(aekit.evaluate, "evaluate", lambda *a, **kw: {"mse": math.nan, "loss": math.inf, "n": 3})
    assert main(["evaluate", str(finished), "--json"]) == 0
    text = capsys.readouterr().out
    out = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))
    assert out["mse"] is None and out["loss"] is None and out["n"] == 3


def test_dumps_json_is_standard():
    assert dumps_json({"a": [1.0, math.nan, -math.inf], "b": {"c": math.inf}}) == \
        '{"a": [1.0, null, null], "b": {"c": null}}'


# ----------------------------------------------------------------------------------------------- 5. the explorer


class _LocalServer:
    """uvicorn on 127.0.0.1 and a free port, in a thread."""

    def __init__(self, app):
        import uvicorn

        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                                    lifespan="off"))
        import threading

        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> int:
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the test server did not start"
            time.sleep(0.02)
        return self.server.servers[0].sockets[0].getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@pytest.fixture(scope="module")
def served(finished):
    pytest.importorskip("fastapi")
    pytest.importorskip("httpx")
    pytest.importorskip("multipart")
    from fastapi.testclient import TestClient

    from aekit.serve.app import create_app, explorer_for_run

    explorer = explorer_for_run(finished, max_upload_bytes=50_000)
    return explorer, TestClient(create_app(explorer), base_url="http://127.0.0.1")


@pytest.mark.parametrize("host, status", [
    ("evil.example", 400), ("127.0.0.1.evil.example", 400), ("localhost.evil.example:8000", 400), ("", 400),
    ("127.0.0.1:8000", 200), ("localhost:8000", 200), ("[::1]:8000", 200), ("LOCALHOST", 200),
])
def test_host_header_must_name_this_machine(served, host, status):
    _, client = served
    for method, path, body in (("GET", "/api/info", None), ("POST", "/api/encode", {"indices": [0]})):
        r = client.request(method, path, json=body, headers={"Host": host})
        assert r.status_code == status, (host, path, r.text)
        if status == 400:
            assert "Host header" in r.json()["error"] and "access-control-allow-origin" not in r.headers


def test_the_host_option_is_accepted_and_wildcards_accept_addresses(finished):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from aekit.serve.app import create_app, explorer_for_run

    ex = explorer_for_run(finished)
    named = TestClient(create_app(ex, host="explorer.lan"), base_url="http://explorer.lan:8000")
    assert named.get("/api/info").status_code == 200
    assert named.get("/api/info", headers={"Host": "evil.example"}).status_code == 400
    wild = TestClient(create_app(ex, host="0.0.0.0"), base_url="http://192.168.1.20:8000")
    assert wild.get("/api/info").status_code == 200
    assert wild.get("/api/info", headers={"Host": "evil.example"}).status_code == 400


@pytest.mark.parametrize("path, payload, words", [
    ("/api/encode", {"inputs": [[0.0] * 64, [0.0] * 3]}, "input 1 has 3"),
    ("/api/encode", {"inputs": [[1e300] * 64]}, "float32 range"),
    ("/api/decode", {"z": [[0.0] * 4, [0.0]]}, "code 1 has 1"),
    ("/api/decode", {"z": [[1e300] * 4]}, "float32 range"),
])
def test_ragged_and_out_of_range_arrays_are_422(served, path, payload, words):
    _, client = served
    r = client.post(path, json=payload)
    assert r.status_code == 422 and words in r.json()["error"], r.text
    assert client.get("/api/info").status_code == 200


def test_non_finite_results_are_refused(served, monkeypatch):
    explorer, client = served
    monkeypatch.setattr(explorer, "decode", lambda rows, values=False, label=None: {"images": [], "values": [[math.inf]]})
    r = client.post("/api/decode", json={"z": [[0.0] * 4], "values": True})
    assert r.status_code == 422 and "not finite" in r.json()["error"]


def test_no_cdn_docs_page_but_the_openapi_json(served):
    _, client = served
    assert client.get("/docs").status_code == 404 and client.get("/redoc").status_code == 404
    assert "/api/encode" in client.get("/openapi.json").json()["paths"]


def _chunked_post(port: int, path: str, total: int, content_type: str, prefix: bytes = b"",
                  chunk: int = 64 * 1024) -> tuple[int, bytes]:
    """POST ``total`` bytes as a chunked body to 127.0.0.1:port; stops sending when the server answers.
    Returns (bytes sent, the response)."""
    import select
    import socket

    sent = 0
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: {content_type}\r\n"
                  "Transfer-Encoding: chunked\r\n\r\n".encode())
        if prefix:
            s.sendall(f"{len(prefix):x}\r\n".encode() + prefix + b"\r\n")
        piece = f"{chunk:x}\r\n".encode() + b"1" * chunk + b"\r\n"
        try:
            while sent < total:
                if select.select([s], [], [], 0)[0]:
                    break  # the server has answered
                s.sendall(piece)
                sent += chunk
        except OSError:  # the server closed the connection
            pass
        response = b""
        try:
            while b"\r\n\r\n" not in response or not response.split(b"\r\n\r\n", 1)[1]:
                data = s.recv(65536)
                if not data:
                    break
                response += data
        except OSError:
            pass
    return sent, response


@pytest.mark.parametrize("path, content_type", [
    ("/api/decode", "application/json"), ("/api/encode/image", "multipart/form-data; boundary=b"),
    ("/api/segment", "multipart/form-data; boundary=b"),
    ("/api/info", "application/json"),
])
def test_a_chunked_body_is_stopped_at_the_limit(finished, path, content_type):
    pytest.importorskip("uvicorn")
    from aekit.serve.app import create_app, explorer_for_run

    app = create_app(explorer_for_run(finished, max_upload_bytes=50_000))
    with _LocalServer(app) as port:
        part = b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\nContent-Type: image/png\r\n\r\n'
        sent, response = _chunked_post(port, path, total=64 << 20, content_type=content_type,
                                       prefix=part if "multipart" in content_type else b"")
    status = response.split(b" ", 2)[1] if response else b""
    if path == "/api/info":  # a GET route ignores a body, but must not read it all either
        assert status in (b"405", b"413"), response[:300]
    else:
        assert status == b"413", response[:300]
        assert b"over the limit" in response
    assert sent < 16 << 20, f"the server read {sent:,} bytes of a chunked body before refusing it"


def _slow_explorer(delay: float):
    """The stand-in segmenter with a slow predict (a sleep: it holds no CPU)."""
    from serve_stubs import StandInSegmenter

    from aekit.serve.explorer import Explorer

    class Slow(StandInSegmenter):
        def predict(self, x):
            time.sleep(delay)
            return super().predict(x)

    return Explorer(Slow(), None, model_name="slow-unet")


def test_info_stays_fast_while_uploads_are_segmented():
    pytest.importorskip("uvicorn")
    httpx = pytest.importorskip("httpx")
    import threading

    from serve_stubs import png_bytes

    from aekit.serve.app import create_app

    app = create_app(_slow_explorer(0.4))
    statuses: list[int] = []
    with _LocalServer(app) as port:
        url = f"http://127.0.0.1:{port}"

        def upload():
            r = httpx.post(url + "/api/segment", files={"file": ("x.png", png_bytes((16, 16)), "image/png")},
                           timeout=60)
            statuses.append(r.status_code)

        threads = [threading.Thread(target=upload) for _ in range(6)]
        for t in threads:
            t.start()
        time.sleep(0.3)  # the uploads are being processed (6 × 0.4 s, one at a time under the model lock)
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            assert httpx.get(url + "/api/info", timeout=30).status_code == 200
            times.append(time.perf_counter() - t0)
        for t in threads:
            t.join()
    assert statuses.count(200) == 6
    assert max(times) < 0.5, f"/api/info took {max(times):.2f} s while uploads were processed"


def test_a_full_explorer_answers_503():
    from fastapi.testclient import TestClient
    from serve_stubs import png_bytes

    from aekit.serve.app import create_app

    client = TestClient(create_app(_slow_explorer(0.5), max_busy=1), base_url="http://127.0.0.1")
    import threading

    statuses: list[int] = []

    def upload():
        statuses.append(client.post("/api/segment", files={"file": ("x.png", png_bytes((16, 16)),
                                                                     "image/png")}).status_code)

    threads = [threading.Thread(target=upload) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses)[0] == 200 and 503 in statuses


def test_a_busy_port_is_one_line_before_the_banner(finished, capsys):
    pytest.importorskip("fastapi")
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        assert main(["serve", str(finished), "--port", str(port)]) == 2
    captured = capsys.readouterr()
    assert f"port {port}" in one_error_line(captured.err) and "explorer for" not in captured.err


# ------------------------------------------------------------------------ 10. a crafted run never downloads


@pytest.mark.parametrize("spec", ["mnist", "dsprites"])
def test_serving_a_crafted_run_neither_downloads_nor_writes_outside_it(run_copy, tmp_path, monkeypatch, caplog,
                                                                       spec):
    """config.json pointing the data at a named dataset in a folder outside the run: the explorer loads the
    run without its map, touches no network and creates nothing there (dSprites would write a 377 MB cache)."""
    pytest.importorskip("fastapi")
    import urllib.request

    from aekit.serve.app import explorer_for_run

    elsewhere = tmp_path / "elsewhere"
    cfg = json.loads((run_copy / "config.json").read_text())
    cfg["data"].update(spec=spec, data_dir=str(elsewhere), download=True)
    (run_copy / "config.json").write_text(json.dumps(cfg))
    calls = []
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: calls.append(a) or pytest.fail("network"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("AEKIT_DATA", raising=False)
    if spec == "dsprites":  # rendering all 737,280 sprites in memory is the fallback: stop before it
        import aekit.data.dsprites as dsprites

        monkeypatch.setattr(dsprites, "render", lambda index: (_ for _ in ()).throw(
            RunError("stand-in: rendered in memory, no cache written")))
    with caplog.at_level(logging.WARNING):
        explorer = explorer_for_run(run_copy)
    assert explorer is not None and calls == []
    assert not elsewhere.exists() and not (tmp_path / "home" / ".cache" / "aekit").exists()
    assert "serving without the latent map" in caplog.text
