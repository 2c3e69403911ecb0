"""``aekit demo``: a small VAE on the embedded digits, with its report.

Its output is short: a progress bar over the epochs on a terminal; otherwise (``make demo`` piped to a log, CI)
a line at every tenth of the epochs, and after :data:`LINE_AT_LEAST_S` seconds without one; then a summary with
the headline test figures and where the report is.  The per-epoch lines of ``aekit train`` are left out (they are in ``RUN/metrics.csv``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

log = logging.getLogger("aekit")

# The demo's settings: a small MLP VAE that trains on the 1,437 training digits in well under a minute.
DEMO_OPTIONS: dict[str, Any] = {"hidden": "256,128", "latent_dim": 8, "epochs": 150, "batch_size": 64,
                                "lr": 2e-3, "beta_warmup_epochs": 10}
LINE_AT_LEAST_S = 120.0  # when not on a terminal: a progress line at least this often (and every tenth)


def add_arguments(p: argparse.ArgumentParser, argv: Sequence[str]) -> None:
    p.add_argument("--out", default="runs/demo", help="run directory (default runs/demo; replaced)")
    p.add_argument("--epochs", type=int, default=None, help=f"training epochs (default {DEMO_OPTIONS['epochs']})")


def _progress(epochs: int, stream: Any = None, interval: float = LINE_AT_LEAST_S) -> Any:
    """A trainer callback: one bar over all epochs on a terminal, else a log line at every tenth of the epochs
    (at most 10 lines) and whenever ``interval`` seconds passed without one."""
    tenth = max(1, math.ceil(epochs / 10))
    from ..train.callbacks import Callback

    class DemoProgress(Callback):
        def __init__(self) -> None:
            self.stream = stream or sys.stderr
            self.bar: Any = None
            self.start = self.last = 0.0

        def on_fit_start(self, trainer: Any) -> None:
            self.start = self.last = time.monotonic()
            if bool(getattr(self.stream, "isatty", lambda: False)()):
                from tqdm.auto import tqdm

                self.bar = tqdm(total=epochs, desc="demo: training", unit="epoch", leave=False, dynamic_ncols=True,
                                file=self.stream)

        def on_epoch_end(self, trainer: Any, row: dict[str, Any]) -> None:
            epoch, val = int(row["epoch"]), float(row.get("val_loss", math.nan))
            if self.bar is not None:
                self.bar.set_postfix({"val_loss": f"{val:.4g}"})
                self.bar.update(epoch - self.bar.n)
            elif epoch % tenth == 0 or epoch == epochs or time.monotonic() - self.last >= interval:
                self.last = time.monotonic()
                log.info("demo: epoch %d/%d, validation loss %.4g (%.0f s)", epoch, epochs, val,
                         self.last - self.start)

        def _close(self) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

        def on_fit_end(self, trainer: Any) -> None:
            self._close()

        def on_exception(self, trainer: Any, error: BaseException) -> None:
            self._close()

    return DemoProgress()


@contextlib.contextmanager
def _without_epoch_lines() -> Iterator[None]:
    """Hide the trainer's INFO lines (one per epoch) while the demo trains; warnings still show."""
    trainer_log = logging.getLogger("aekit.train")
    level = trainer_log.level
    if trainer_log.getEffectiveLevel() < logging.WARNING:
        trainer_log.setLevel(logging.WARNING)
    try:
        yield
    finally:
        trainer_log.setLevel(level)


def headline(run: Any) -> str:
    """The summary's test figures: ELBO (± its standard error when evaluated), reconstruction, KL, collapse."""
    ev = run.evaluation or {}
    parts = []
    if isinstance(ev.get("elbo"), float):
        se = ev.get("elbo_stderr")
        parts.append(f"ELBO {ev['elbo']:.2f}" + (f" ± {se:.2f}" if isinstance(se, float) else "") + " nats per digit")
    for key, what in (("recon", "reconstruction {:.2f} nats"), ("kl", "KL {:.2f} nats"),
                      ("sse_per_image", "SSE {:.3g} per image")):
        if isinstance(ev.get(key), float):
            parts.append(what.format(ev[key]))
    pc = ev.get("posterior_collapse")
    if isinstance(pc, dict) and pc.get("collapsed") is True:
        parts.append(f"posterior collapse: {pc.get('active_units')} of {pc.get('latent_dim')} units active")
    return ", ".join(parts)


def cmd_demo(args: argparse.Namespace) -> int:
    from ..pipeline import train

    options: dict[str, Any] = dict(DEMO_OPTIONS)
    if args.epochs is not None:
        options["epochs"] = args.epochs
    quiet = bool(getattr(args, "quiet", False))
    options["progress"] = False  # the demo's own progress below replaces the per-epoch bars and lines
    log.info("demo: training a VAE on the embedded 8x8 digits for %d epochs -> %s", options["epochs"], args.out)
    t0 = time.monotonic()
    extra = [] if quiet else [_progress(int(options["epochs"]))]
    with _without_epoch_lines():
        run = train("vae", "digits", args.out, overwrite=True, callbacks=extra, **options)
    log.info("demo: done in %.0f s; test: %s", time.monotonic() - t0, headline(run))
    if run.path is not None and (run.path / "report.html").exists():
        log.info("demo: open the report %s", (run.path / "report.html").resolve())
    return 0
