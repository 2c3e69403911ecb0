"""`aekit demo` keeps its output short: a bar over the epochs on a terminal, a line every few seconds when not on
one (piped into a log, `make demo` under CI), and a summary; the trainer's per-epoch lines are left out."""

from __future__ import annotations

import io
import logging
from types import SimpleNamespace

import pytest

from aekit.cli import main
from aekit.cli.demo import _progress, _without_epoch_lines, headline


class Stream(io.StringIO):
    def __init__(self, tty: bool):
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_progress_lines_off_a_terminal_and_a_bar_on_one(caplog):
    caplog.set_level(logging.INFO, logger="aekit")
    cb = _progress(150, stream=Stream(False), interval=3600.0)
    cb.on_fit_start(None)
    for e in range(1, 151):
        cb.on_epoch_end(None, {"epoch": float(e), "val_loss": 30.0})
    cb.on_fit_end(None)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 10 and lines[0].startswith("demo: epoch 15/150, validation loss 30 (")  # every tenth
    assert lines[-1].startswith("demo: epoch 150/150")
    caplog.clear()
    slow = _progress(150, stream=Stream(False), interval=0.0)  # long epochs: a line whenever the interval passed
    slow.on_fit_start(None)
    for e in range(1, 4):
        slow.on_epoch_end(None, {"epoch": float(e), "val_loss": 1.0})
    assert [r.getMessage()[:18] for r in caplog.records] == ["demo: epoch 1/150,", "demo: epoch 2/150,",
                                                              "demo: epoch 3/150,"]
    caplog.clear()
    tty = Stream(True)
    bar = _progress(4, stream=tty, interval=0.0)
    bar.on_fit_start(None)
    for e in range(1, 5):
        bar.on_epoch_end(None, {"epoch": float(e), "val_loss": 2.0})
    bar.on_fit_end(None)
    assert not caplog.records and "demo: training" in tty.getvalue() and "/4 " in tty.getvalue()  # a bar, no lines


def test_epoch_lines_hidden_while_the_demo_trains(caplog):
    caplog.set_level(logging.INFO)
    trainer_log = logging.getLogger("aekit.train")
    with _without_epoch_lines():
        trainer_log.info("epoch 1/150  train_loss 30")
        trainer_log.warning("posterior collapse: ...")
    trainer_log.info("after")
    assert [r.getMessage() for r in caplog.records] == ["posterior collapse: ...", "after"]


def test_headline_numbers():
    ev = {"elbo": -27.38, "elbo_stderr": 0.0105, "recon": 20.1, "kl": 7.28, "sse_per_image": 5.1,
          "posterior_collapse": {"collapsed": False, "active_units": 5, "latent_dim": 8}}
    assert headline(SimpleNamespace(evaluation=ev)) == \
        "ELBO -27.38 ± 0.01 nats per digit, reconstruction 20.10 nats, KL 7.28 nats, SSE 5.1 per image"
    ev["posterior_collapse"] = {"collapsed": True, "active_units": 0, "latent_dim": 8}
    assert headline(SimpleNamespace(evaluation=ev)).endswith("posterior collapse: 0 of 8 units active")
    assert headline(SimpleNamespace(evaluation=None)) == ""


@pytest.mark.slow
def test_demo_output_when_piped(tmp_path, capsys):
    assert main(["demo", "--epochs", "2", "--out", str(tmp_path / "demo")]) == 0
    err = capsys.readouterr().err.splitlines()
    assert not [line for line in err if "train_loss" in line]  # no per-epoch lines of the trainer
    assert any(line.startswith("demo: done in") and "ELBO" in line for line in err)
    assert any("report.html" in line for line in err) and len(err) <= 10, err
