"""Issue 19's acceptance corpus: bad inputs of every group, one table, each either one `aekit: error:` line with
exit 2, or a command that works — never a traceback, a hang, or a file changed outside its run / output.

Every case runs in a fresh working folder ``W`` holding copies of two finished runs (``W/run``: an ``ae``,
``W/vae``), its own set-up files and ``HOME=W/home`` (so ``~/.cache`` writes show).  Everything under ``W`` is
fingerprinted before and after: an error case may change nothing (a resume may leave its run's ``.lock``), a
working case only what lies under ``W/out``.  The network is cut off: ``urllib`` and the Hub downloader fail
the test if called, and the mirror variable points at a closed port.

The quick part runs the CLI in-process (``aekit.cli.main``) under a SIGALRM timeout; the slow part runs the
cases that would hang or exhaust memory without their guards in subprocesses with a hard timeout and an
address-space limit, and a training killed with SIGKILL.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import aekit
from aekit.cli import main

ROOT = Path(__file__).resolve().parents[1]
QUICK = {"hidden": "16", "latent_dim": 3, "batch_size": 64, "progress": False, "report": False}


# ------------------------------------------------------------------------------------------------ set-ups


def _edit_config(w: Path, change: Callable[[dict], None], run: str = "run") -> None:
    p = w / run / "config.json"
    cfg = json.loads(p.read_text())
    change(cfg)
    p.write_text(json.dumps(cfg))


def _edit_checkpoint(w: Path, change: Callable[[dict, dict], None]) -> None:
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    p = w / "run" / "checkpoint.safetensors"
    with safe_open(str(p), "pt") as f:
        meta = dict(f.metadata())
    tensors = load_file(str(p))
    change(meta, tensors)
    save_file(tensors, str(p), meta)


def _loop(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        def edit(meta: dict, tensors: dict) -> None:
            loop = json.loads(meta["loop"])
            change(loop)
            meta["loop"] = json.dumps(loop)

        _edit_checkpoint(w, edit)
    return setup


def _idx(dims: tuple[int, ...], payload: bytes, code: int = 0x08) -> bytes:
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">I", d) for d in dims) + payload


def _idx_dir(w: Path, *, train_images: bytes | None = None, train_labels: bytes | None = None) -> None:
    d = w / "idx"
    d.mkdir()
    x, y = np.zeros((20, 8, 8), np.uint8), (np.arange(20) % 10).astype(np.uint8)
    (d / "train-images-idx3-ubyte").write_bytes(train_images or _idx(x.shape, x.tobytes()))
    (d / "train-labels-idx1-ubyte").write_bytes(train_labels or _idx(y.shape, y.tobytes()))
    (d / "t10k-images-idx3-ubyte").write_bytes(_idx((5, 8, 8), x[:5].tobytes()))
    (d / "t10k-labels-idx1-ubyte").write_bytes(_idx((5,), y[:5].tobytes()))


def _labels_2e9(w: Path) -> None:
    y = np.zeros(20, ">i4")
    y[0] = 2_000_000_000
    _idx_dir(w, train_labels=_idx((20,), y.tobytes(), code=0x0C))


def _png(w: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(w / "a.png")


def _file(w: Path) -> None:
    (w / "file.txt").write_text("not a folder")


def _dirs(w: Path) -> None:
    for name in ("d.png", "d.npy", "d.csv", "out/scores.png"):
        (w / name).mkdir(parents=True)


def _crafted(w: Path, spec: str = "mnist") -> None:
    """A run whose config points its data at a named dataset in a folder outside the run."""
    for run in ("run", "vae"):
        _edit_config(w, lambda c: c["data"].update(spec=spec, data_dir=str(w / "elsewhere"), download=True), run)


_CVAE: list[Path] = []  # the module's finished cvae run (set by the ``runs`` fixture), copied by _cvae


def _cvae(w: Path) -> None:
    """A finished conditional run (``W/cvae``, digits: classes "0" … "9")."""
    shutil.copytree(_CVAE[0], w / "cvae")


def _setups(*fs: Callable[[Path], None]) -> Callable[[Path], None]:
    def setup(w: Path) -> None:
        for f in fs:
            f(w)
    return setup


# ------------------------------------------------------------------------------------------------ the table


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # {w} is the case's working folder
    expect: str = "error"  # "error": exit 2, one `aekit: error:` line; "works": exit 0
    match: str = ""  # a substring of the error line (or of stderr, for a working case)
    setup: Callable[[Path], None] | None = None
    timeout: float = 60.0


R, V, CV = "{w}/run", "{w}/vae", "{w}/cvae"
TRAIN = ("train", "--epochs", "1", "--hidden", "16", "--latent-dim", "3", "--no-report")

CASES = [
    # --- class labels of a conditional run (--label): an unconditional run, a class the run never saw
    *[Case(f"label-unconditional-{cmd}", (cmd, V, "--label", "3", *extra, "--out", "{w}/out/s.png"),
           match="needs a conditional model")
      for cmd, extra in [("sample", ()), ("traverse", ()), ("interpolate", ())]],
    Case("label-unknown-name", ("sample", CV, "--label", "Sneaker", "--out", "{w}/out/s.png"),
         match="valid labels are 0, 1, 2", setup=_cvae),
    Case("label-unknown-id", ("traverse", CV, "--label", "10", "--out", "{w}/out/t.png"),
         match="valid labels are 0, 1, 2", setup=_cvae),
    Case("label-works", ("sample", CV, "--label", "3", "-n", "4", "--out", "{w}/out/s.png"), "works", setup=_cvae),
    # --- options out of range (validated before anything is created)
    *[Case(f"option{flag}={value}", (*TRAIN, flag, value, "--out", "{w}/out/r"), match=flag.lstrip("-")[:6])
      for flag, value in [("--weight-decay", "-1"), ("--weight-decay", "nan"), ("--seed", "-1"),
                          ("--seed", "100000000000000000000000"), ("--split-seed", "-1"), ("--max-val", "-1"),
                          ("--grad-clip", "-1"), ("--lr-warmup-epochs", "-1"), ("--lr", "inf")]],
    Case("option-unknown", (*TRAIN, "--latnt-dim", "3", "--out", "{w}/out/r"), match="--latent-dim"),
    Case("option-device", (*TRAIN, "--device", "cuda:7", "--out", "{w}/out/r"), match="cuda"),
    # --- unwritable outputs, for every command that writes
    *[Case(f"out-{how}-{argv[0]}", tuple(argv), match=match) for how, match, argv in [
        ("proc", "cannot", ["sample", V, "--out", "/proc/x/s.png"]),
        ("proc", "cannot", ["encode", R, "--out", "/proc/x/c.npy"]),
        ("proc", "cannot", ["reconstruct", R, "--out", "/proc/x/r.png"]),
        ("proc", "cannot", ["export", R, "--onnx", "/proc/x", "--no-check"]),
        ("proc", "cannot", ["anomaly", R, "--out", "/proc/x/s.csv"]),
        ("proc", "cannot", ["experiment", "ae-vs-vae", "--quick", "--out", "/proc/x"]),
        ("proc", "cannot", ["segment", R, "{w}/a.png", "--out", "/proc/x"]),
        ("proc", "cannot", ["interpolate", R, "--out", "/proc/x/i.png"]),
        ("proc", "cannot", ["traverse", R, "--out", "/proc/x/t.png"]),
        ("proc", "cannot", [*TRAIN, "--out", "/proc/x"]),
    ]],
    *[Case(f"out-under-a-file-{argv[0]}", tuple(argv), match="which is a file", setup=_file) for argv in [
        ["sample", V, "--out", "{w}/file.txt/s.png"], ["encode", R, "--out", "{w}/file.txt/c.npy"],
        ["reconstruct", R, "--out", "{w}/file.txt/r.png"], ["export", R, "--onnx", "{w}/file.txt/x", "--no-check"],
        ["anomaly", R, "--out", "{w}/file.txt/s.csv"], ["experiment", "ae-vs-vae", "--quick", "--out", "{w}/file.txt/x"],
        ["segment", R, "{w}/a.png", "--out", "{w}/file.txt/x"], ["interpolate", R, "--out", "{w}/file.txt/i.png"],
        ["traverse", R, "--out", "{w}/file.txt/t.png"], [*TRAIN, "--out", "{w}/file.txt/run"],
    ]],
    *[Case(f"out-is-a-file-{argv[0]}", tuple(argv), match="is a file", setup=_file) for argv in [
        ["export", R, "--onnx", "{w}/file.txt", "--no-check"], ["experiment", "ae-vs-vae", "--quick", "--out", "{w}/file.txt"],
        ["segment", R, "{w}/a.png", "--out", "{w}/file.txt"], [*TRAIN, "--out", "{w}/file.txt"],
    ]],
    *[Case(f"out-is-a-directory-{argv[0]}-{Path(argv[-1]).parent.name}{Path(argv[-1]).suffix}", tuple(argv), match="is a directory", setup=_dirs)
      for argv in [["sample", V, "--out", "{w}/d.png"], ["sample", V, "--out", "{w}/d.npy"],
                   ["encode", R, "--out", "{w}/d.npy"], ["reconstruct", R, "--out", "{w}/d.png"],
                   ["anomaly", R, "--out", "{w}/d.csv"], ["anomaly", R, "--out", "{w}/out/scores.csv"],
                   ["interpolate", R, "--out", "{w}/d.png"], ["traverse", R, "--out", "{w}/d.png"]]],
    Case("out-wrong-suffix", ("encode", R, "--out", "{w}/out/c.txt"), match=".npy or .csv"),
    # --- sizes that cannot fit in memory or time: refused with the limit in the message
    Case("size-latent-dim", (*TRAIN[:-3], "--latent-dim", "1000000000", "--out", "{w}/out/r"), match="memory"),
    Case("size-latent-dim-float", (*TRAIN[:-3], "--latent-dim", "1e9", "--out", "{w}/out/r"), match="integer"),
    Case("size-hidden", ("train", "--epochs", "1", "--hidden", "100000000000", "--out", "{w}/out/r"), match="memory"),
    Case("size-image-size", ("train", "--model", "unet", "--data", "cells", "--image-size", "100000", "--epochs",
                             "1", "--out", "{w}/out/r"), match="memory"),
    Case("size-sample-n", ("sample", V, "-n", "1000000000", "--out", "{w}/out/s.png"), match="at most"),
    Case("size-sample-n-npy", ("sample", V, "-n", "1000000000000", "--out", "{w}/out/s.npy"), match="memory"),
    Case("size-interpolate-steps", ("interpolate", R, "--steps", "100000000", "--out", "{w}/out/i.png"),
         match="at most"),
    Case("size-traverse-steps", ("traverse", V, "--steps", "100000000", "--out", "{w}/out/t.png"), match="fewer"),
    Case("size-reconstruct-n", ("reconstruct", R, "-n", "100000000", "--out", "{w}/out/r.png"), match="at most"),
    Case("size-epochs", (*TRAIN[:1], "--epochs", "100000000000000000000000", "--out", "{w}/out/r"),
         match="optimiser steps"),
    Case("size-epochs-float", (*TRAIN[:1], "--epochs", "1e23", "--out", "{w}/out/r"), match="integer"),
    Case("size-iwae-samples", ("evaluate", V, "--iwae-samples", "1000000000"), match="decoder passes"),
    Case("size-iwae-samples-zero", ("evaluate", V, "--iwae-samples", "0"), match="K ≥ 1"),
    # --- data
    Case("data-npy-no-features", (*TRAIN, "--data", "npy:{w}/t.npy", "--out", "{w}/out/r"), match="no values",
         setup=lambda w: np.save(w / "t.npy", np.zeros((50, 0), np.float32))),
    Case("data-idx-overflowing-dims", (*TRAIN, "--data", "idx:{w}/idx", "--out", "{w}/out/r"), match="truncated",
         setup=lambda w: _idx_dir(w, train_images=_idx((20, 2**31, 2**31), b"\0" * 1280))),
    Case("data-idx-labels-2e9", (*TRAIN, "--data", "idx:{w}/idx", "--out", "{w}/out/r"), match="at most",
         setup=_labels_2e9),
    Case("data-csv-1e308", (*TRAIN, "--data", "csv:{w}/t.csv", "--out", "{w}/out/r"), match="float32",
         setup=lambda w: (w / "t.csv").write_text("a,b\n" + "".join(f"{i},{1e308 if i == 3 else i}\n"
                                                                    for i in range(30)))),
    Case("data-npy-not-npy", (*TRAIN, "--data", "npy:{w}/file.txt", "--out", "{w}/out/r"), match="not a NumPy",
         setup=_file),
    Case("data-npy-float64-1e300", (*TRAIN, "--data", "npy:{w}/t.npy", "--out", "{w}/out/r"), match="float32",
         setup=lambda w: np.save(w / "t.npy", np.full((40, 3), 1e300))),
    # --- run files
    *[Case(f"run-{name}-{cmd}", (cmd, R, *(["--out", "{w}/out/s.png"] if cmd == "sample" else [])), match=m,
           setup=setup) for cmd in ("evaluate", "sample")
      for name, m, setup in [
          ("binary-config", "config.json", lambda w: (w / "run" / "config.json").write_bytes(b"\0\xff\xfe" * 50)),
          ("model-config-null", "model_config", lambda w: _edit_config(w, lambda c: c.update(model_config=None))),
          ("train-list", "'train'", lambda w: _edit_config(w, lambda c: c.update(train=[1]))),
          ("negative-input-shape", "input_shape",
           lambda w: _edit_config(w, lambda c: c["model_config"].update(input_shape=[1, -8, 8]))),
          ("weights-a-directory", "model.safetensors",
           lambda w: ((w / "run" / "model.safetensors").unlink(), (w / "run" / "model.safetensors").mkdir())),
          ("weights-changed", "SHA-256", lambda w: (w / "run" / "model.safetensors").write_bytes(
              (w / "run" / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\0")),
      ]],
    Case("run-broken-metrics-evaluate", ("evaluate", R), "works", "metrics.csv",
         setup=lambda w: (w / "run" / "metrics.csv").write_bytes(b"\xff\0garbage,,\n1,2\n")),
    Case("run-broken-evaluation-evaluate", ("evaluate", R), "works",
         setup=lambda w: (w / "run" / "evaluation.json").write_bytes(b"\xff{not json")),
    Case("run-broken-metrics-sample", ("sample", V, "-n", "4", "--out", "{w}/out/s.png"), "works",
         setup=lambda w: ((w / "vae" / "metrics.csv").write_bytes(b"\xff\0garbage"),
                          (w / "vae" / "evaluation.json").write_text("[1, 2"))),
    Case("run-newer-version", ("evaluate", R), "works", "newer",
         setup=lambda w: _edit_config(w, lambda c: c.update(aekit_version="99.0"))),
    Case("run-not-a-run", ("evaluate", "{w}/home"), match="config.json"),
    # --- checkpoints and resume contradictions
    Case("ckpt-missing-loop-keys", ("train", "--resume", R, "--epochs", "3", "--no-report"), match="loop counters",
         setup=_loop(lambda loop: loop.pop("epoch"))),
    Case("ckpt-no-metadata", ("train", "--resume", R, "--epochs", "3", "--no-report"), match="training state",
         setup=lambda w: _edit_checkpoint(w, lambda m, t: [m.pop(k) for k in list(m)])),
    Case("ckpt-bad-optimiser", ("train", "--resume", R, "--epochs", "3", "--no-report"), match="optimiser",
         setup=lambda w: _edit_checkpoint(w, lambda m, t: m.update(optimizer=json.dumps([1, 2])))),
    Case("ckpt-bad-rng", ("train", "--resume", R, "--epochs", "3", "--no-report"), match="random state",
         setup=lambda w: _edit_checkpoint(w, lambda m, t: t.update({"rng.data": t["rng.data"][:7].float()}))),
    Case("ckpt-epoch-50-of-3", ("train", "--resume", R, "--epochs", "3", "--no-report"), match="epoch 50",
         setup=_loop(lambda loop: loop.update(epoch=50))),
    Case("ckpt-truncated", ("train", "--resume", R, "--epochs", "3", "--no-report"), match="checkpoint",
         setup=lambda w: (w / "run" / "checkpoint.safetensors").write_bytes(
             (w / "run" / "checkpoint.safetensors").read_bytes()[:200])),
    Case("resume-with-out", ("train", "--resume", R, "--out", "{w}/out/x"), match="--out"),
    Case("resume-with-model", ("train", "--resume", R, "--model", "vae"), match="--model"),
    Case("resume-fewer-epochs", ("train", "--resume", R, "--epochs", "1"), match="already trained 2 epochs"),
    Case("resume-not-a-run", ("train", "--resume", "{w}/nothing"), match="does not exist"),
    # --- crafted runs: loading a run never downloads or writes outside it
    Case("crafted-evaluate", ("evaluate", R), match="never downloaded", setup=_crafted),
    Case("crafted-encode", ("encode", R, "--out", "{w}/out/c.npy"), match="never downloaded", setup=_crafted),
    Case("crafted-sample", ("sample", V, "-n", "4", "--out", "{w}/out/s.png"), "works", setup=_crafted),
    Case("crafted-with-explicit-data", ("evaluate", R, "--data", "digits"), "works", setup=_crafted),
    # --- things that work
    Case("works-sample-npy", ("sample", V, "-n", "3", "--out", "{w}/out/deep/s.npy"), "works"),
    Case("works-encode-csv", ("encode", R, "--out", "{w}/out/c.csv"), "works"),
]
CASES = [dataclasses.replace(c, setup=_setups(c.setup, _png) if c.setup else _png) if "segment" in c.argv else c
         for c in CASES]
_ids = [c.id for c in CASES]
assert len(set(_ids)) == len(_ids), sorted(i for i in _ids if _ids.count(i) > 1)


# ------------------------------------------------------------------------------------------------ machinery


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Two finished 2-epoch runs (copied into every case's folder)."""
    base = tmp_path_factory.mktemp("corpus")
    aekit.train("ae", "digits", base / "run", epochs=2, **QUICK)
    aekit.train("vae", "digits", base / "vae", epochs=2, **QUICK)
    aekit.train("cvae", "digits", base / "cvae", epochs=1, evaluate=False, **QUICK)  # copied by the _cvae cases
    _CVAE[:] = [base / "cvae"]
    return base


def _fingerprint(w: Path) -> dict[str, tuple]:
    out: dict[str, tuple] = {}
    for p in sorted(w.rglob("*")):
        rel = str(p.relative_to(w))
        if p.is_symlink() or not p.is_file():
            out[rel] = ("dir",) if p.is_dir() else ("other",)
        else:
            out[rel] = (p.stat().st_size, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _closed_port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/"


def _prepare(case: Case, runs: Path, w: Path) -> list[str]:
    shutil.copytree(runs / "run", w / "run")
    shutil.copytree(runs / "vae", w / "vae")
    (w / "home").mkdir()
    if case.setup is not None:
        case.setup(w)
    return [a.replace("{w}", str(w)) for a in case.argv]


def _check_outcome(case: Case, rc: int, err: str, before: dict, after: dict) -> None:
    assert "Traceback" not in err, err
    errors = [ln for ln in err.splitlines() if ln.startswith("aekit: error:")]
    changed = sorted(k for k in before.keys() | after.keys() if before.get(k) != after.get(k))
    if case.expect == "error":
        assert rc == 2 and len(errors) == 1, f"rc={rc}, stderr:\n{err}"
        assert case.match in errors[0], errors[0]
        # nothing changes; a resume may have taken its run's lock
        assert [k for k in changed if not k.endswith("/.lock")] == [], changed
    else:
        assert rc == 0 and not errors, f"rc={rc}, stderr:\n{err}"
        assert case.match in err, err
        assert [k for k in changed if not (k == "out" or k.startswith("out/"))] == [], changed


class _Timeout(Exception):
    pass


def _alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _Timeout


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_corpus(case: Case, runs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    import urllib.request

    import aekit.hub

    w = tmp_path / "w"
    w.mkdir()
    argv = _prepare(case, runs, w)
    monkeypatch.chdir(w)
    monkeypatch.setenv("HOME", str(w / "home"))
    monkeypatch.setenv("MPLCONFIGDIR", str(tmp_path / "mpl"))  # matplotlib's font cache is not aekit's write
    monkeypatch.delenv("AEKIT_DATA", raising=False)
    monkeypatch.setenv("AEKIT_DATA_MIRROR", _closed_port())
    network: list[object] = []

    def no_network(*args, **kwargs):
        network.append(args[:1])
        raise AssertionError("network access while running a corpus case")

    monkeypatch.setattr(urllib.request, "urlopen", no_network)
    monkeypatch.setattr(aekit.hub, "_download", no_network)
    before = _fingerprint(w)
    capsys.readouterr()
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, case.timeout)
    start = time.monotonic()
    try:
        rc = main(["-q", *argv])
    except SystemExit as e:  # argparse's own errors exit from inside the parser
        rc = e.code if isinstance(e.code, int) else 1
    except _Timeout:
        pytest.fail(f"{case.id} did not finish within {case.timeout:.0f} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert time.monotonic() - start < case.timeout
    err = capsys.readouterr().err
    assert network == [], f"{case.id} tried to use the network"
    _check_outcome(case, rc, err, before, _fingerprint(w))


# ------------------------------------------------------------------------------------- in new processes (slow)

# the cases that, unguarded, hang (epochs, IWAE samples) or take all memory (steps, sizes): a hard timeout and
# an 8 GB address-space limit, so a regression fails the test instead of the machine
SUBPROCESS_CASES = [c for c in CASES if c.id in (
    "size-epochs", "size-iwae-samples", "size-interpolate-steps", "size-sample-n-npy", "size-hidden",
    "size-image-size", "data-idx-labels-2e9", "crafted-evaluate")]


def _limit_memory() -> None:  # runs in the child before exec
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def _env(w: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "AEKIT_DATA"}
    return {**env, "HOME": str(w / "home"), "AEKIT_DATA_MIRROR": _closed_port(), "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1", "MPLCONFIGDIR": str(w.parent / "mpl")}


@pytest.mark.slow
@pytest.mark.parametrize("case", SUBPROCESS_CASES, ids=[c.id for c in SUBPROCESS_CASES])
def test_corpus_in_a_new_process(case: Case, runs: Path, tmp_path: Path) -> None:
    w = tmp_path / "w"
    w.mkdir()
    argv = _prepare(case, runs, w)
    before = _fingerprint(w)
    proc = subprocess.run([sys.executable, "-m", "aekit", "-q", *argv], capture_output=True, text=True, cwd=w,
                          env=_env(w), timeout=120, preexec_fn=_limit_memory)
    _check_outcome(case, proc.returncode, proc.stderr, before, _fingerprint(w))


@pytest.mark.slow
def test_a_killed_training_leaves_a_run_that_says_so_in_one_line(tmp_path: Path) -> None:
    """SIGKILL in the middle of training: no file under a real name is half-written, evaluate says the run is
    incomplete in one line, and the rerun of the same command is refused with the resume hint."""
    out = tmp_path / "R"
    cmd = [sys.executable, "-m", "aekit", "-q", "train", "--model", "ae", "--hidden", "64", "--latent-dim", "4",
           "--batch-size", "16", "--epochs", "50", "--checkpoint-every-s", "0", "--no-report", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=_env(tmp_path))
    try:
        deadline = time.monotonic() + 120
        while not (out / "checkpoint.safetensors").exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait()
        if proc.stderr:
            proc.stderr.close()
    evaluate = subprocess.run([sys.executable, "-m", "aekit", "evaluate", str(out)], capture_output=True, text=True,
                              env=_env(tmp_path), timeout=120)
    lines = [ln for ln in evaluate.stderr.splitlines() if ln.strip()]
    assert evaluate.returncode == 2 and len(lines) == 1 and "incomplete" in lines[0], evaluate.stderr
    assert f"--resume {out}" in lines[0]
    json.loads((out / "config.json").read_text())  # every file under its real name is whole


def test_the_idx_setup_is_valid_without_its_defect(tmp_path: Path) -> None:
    """The IDX folder the data cases start from loads: each case fails for the defect it adds, nothing else."""
    from aekit.data import DataConfig, load_data

    _idx_dir(tmp_path)
    data = load_data(DataConfig(spec=f"idx:{tmp_path / 'idx'}"))
    assert data.shape == (1, 8, 8) and len(data.test) == 5
