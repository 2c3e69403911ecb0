"""``aekit experiment contractive``: the contractive AE (Rifai et al. 2011) swept over its penalty weight λ.

One-hidden-layer sigmoid AEs with tied weights (``--model contractive-ae``), one per λ (λ = 0 is the same
network without the penalty), trained the same way.  For each: the squared Frobenius norm of the encoder's
Jacobian ‖J_f(x)‖²_F on the TEST inputs (exact: one vector-Jacobian product per code unit, in eval mode), the
test reconstruction error (sum of squared errors per image), the error of reconstructing clean test images
from Gaussian-noised ones (σ = ``noise``), and the validation error.  A figure shows the trade-off (error and
Jacobian norm against λ); ``summary.md`` states what the numbers show, with the thresholds it uses.

The default λ of the ``contractive-ae`` registry entry is chosen on the VALIDATION split by the rule of
:func:`pick_lambda`: the largest λ whose validation error is within ``val_tolerance`` of λ = 0's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from typing import Any, cast

import torch

from ..config import check
from ..data import iterate_batches, to_float
from ..evaluate.deterministic import corrupted_errors
from ..models.ae import AE
from ..models.base import Autoencoder
from . import ExperimentContext, ExperimentResult, finding, register, too_short
from .seed_family import _evaluation, _figure, _monotone, _save, _setup, _train, _val_sse

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ContractiveConfig:
    units: int = 0  # code units of the one-layer AE; 0: min(d, max(64, d // 4)) (196 for 784-d inputs)
    # λ of λ·‖J_f(x)‖²_F per sample: a fine grid at the low end, where the registry default is chosen (on the
    # digits λ = 3 and 30 collapsed the codes to nearly constant ones: notes/issue-17.md, session 16)
    lambdas: tuple[float, ...] = (0.0, 0.01, 0.03, 0.1, 0.3)
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32  # small batches: on the 8×8 digits (41 steps per epoch) fewer epochs reach min_steps
    noise: float = 0.2  # σ of the Gaussian noise of the robustness column
    val_tolerance: float = 0.10  # pick_lambda: the validation error may exceed λ = 0's by this share
    jacobian_rows: int = 0  # test rows whose Jacobian is computed; 0: all
    min_steps: int = 3000  # small data: epochs not set explicitly are raised to reach this many steps
    data_dir: str | None = None

    def __post_init__(self) -> None:
        check(len(self.lambdas) >= 2 and all(v >= 0 for v in self.lambdas) and 0.0 in self.lambdas,
              "contractive: lambdas must be ≥ 0, at least two, one of them 0 (the unpenalised AE), e.g. 0,0.1,1")
        check(self.epochs >= 1, "contractive: epochs must be ≥ 1")
        check(self.noise > 0, "contractive: noise must be > 0, e.g. 0.2")
        check(self.val_tolerance >= 0, "contractive: val_tolerance must be ≥ 0, e.g. 0.1")
        check(self.jacobian_rows >= 0, "contractive: jacobian_rows must be ≥ 0 (0: every test row)")


CONTRACTIVE_QUICK: dict[str, Any] = {"min_steps": 0, "lambdas": (0.0, 3.0), "epochs": 3, "batch_size": 64,
                                     "units": 16}


def jacobian_sq_frobenius(model: Autoencoder, x: torch.Tensor, batch_size: int = 1000) -> torch.Tensor:
    """‖∂embed(x)/∂x‖²_F per row of ``x`` (N,), exactly: one vector-Jacobian product per code unit, the model
    in eval mode (rows independent: BatchNorm uses its running statistics)."""
    was = model.training
    model.eval()
    out = []
    try:
        for idx in iterate_batches(len(x), batch_size, shuffle=False):
            with torch.enable_grad():
                xb = to_float(x[idx]).to(model.device).requires_grad_(True)
                h = model.embed(xb).flatten(1)
                total = torch.zeros(len(idx), dtype=torch.float64, device=h.device)
                for j in range(h.shape[1]):
                    (g,) = torch.autograd.grad(h[:, j].sum(), xb, retain_graph=j < h.shape[1] - 1)
                    total += g.flatten(1).double().pow(2).sum(1)
            out.append(total.cpu())
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def pick_lambda(rows: list[dict[str, Any]], tolerance: float) -> float:
    """The largest λ whose validation error is at most (1 + ``tolerance``) × the unpenalised AE's."""
    base = next(r["val_sse_per_image"] for r in rows if r["lambda"] == 0)
    ok = [r["lambda"] for r in rows if r["val_sse_per_image"] <= (1 + tolerance) * base]
    return max(ok)


@register("contractive")
def contractive_sweep(ctx: ExperimentContext) -> ExperimentResult:
    """The contractive AE at several λ: the encoder's Jacobian norm on test inputs against reconstruction error."""
    from ..viz.plots import save_image_grid

    t_start = time.perf_counter()
    cfg, data_cfg, data = _setup(ContractiveConfig, ctx, CONTRACTIVE_QUICK, "contractive")
    d = math.prod(data.shape)
    units = cfg.units or min(d, max(64, d // 4))
    lambdas = tuple(sorted(set(cfg.lambdas)))
    x_test = data.test.x if cfg.jacobian_rows == 0 else data.test.x[:cfg.jacobian_rows]
    rows, runs = [], {}
    steps = math.ceil(len(data.train) / cfg.batch_size) * cfg.epochs
    for lam in lambdas:
        run = _train(ctx, data_cfg, f"lambda-{lam:g}", "contractive-ae", latent_dim=units, contractive=lam,
                     epochs=cfg.epochs, lr=cfg.lr, batch_size=cfg.batch_size)
        runs[lam] = run
        jac = jacobian_sq_frobenius(run.model, x_test)
        noisy = corrupted_errors(run.model, data.test.x, f"gaussian:{cfg.noise:g}", seed=ctx.seed)
        ev = _evaluation(run)
        rows.append({"lambda": lam, "test_jacobian_sq_frobenius": float(jac.mean()),
                     "test_jacobian_frobenius_median": float(jac.sqrt().median()),
                     "test_sse_per_image": ev["sse_per_image"],
                     f"test_sse_noisy_{cfg.noise:g}": float(noisy.mean()),
                     "val_sse_per_image": _val_sse(run, data),
                     "train_s": float(sum(float(r.get("time_s", 0.0)) for r in run.metrics))})
    chosen = pick_lambda(rows, cfg.val_tolerance)

    fig = _figure(6.5, 4.0)
    ax = fig.subplots()
    xs = [r["lambda"] for r in rows]
    ax.plot(xs, [r["test_sse_per_image"] for r in rows], "o-", color="C0", label="clean")
    ax.plot(xs, [r[f"test_sse_noisy_{cfg.noise:g}"] for r in rows], "o:", color="C0", alpha=0.6,
            label=f"from noisy inputs (σ = {cfg.noise:g})")
    ax.set_xscale("symlog", linthresh=min(x for x in xs if x > 0))
    ax.set_xlabel("λ (contractive penalty weight)")
    ax.set_ylabel("test squared error per image", color="C0")
    ax.legend(loc="upper left", fontsize=8)
    ax2 = ax.twinx()
    ax2.plot(xs, [r["test_jacobian_sq_frobenius"] for r in rows], "s--", color="C1")
    ax2.set_yscale("log")
    ax2.set_ylabel("test ‖J_f(x)‖²_F (mean)", color="C1")
    ax.grid(alpha=0.3)
    fig.suptitle(f"{data.name}: one-layer contractive AE, {units} sigmoid units")
    figures = [_save(fig, ctx.out / "contractive.png")]
    if data.kind == "image":
        for lam in dict.fromkeys((lambdas[0], lambdas[-1])):
            w = cast(torch.Tensor, cast(AE, runs[lam].model).encoder[0].weight)  # the one Linear of the encoder
            w = w.detach().float().cpu()
            w = w / w.abs().amax(1, keepdim=True).clamp_min(1e-12)
            name = f"filters_lambda_{lam:g}.png"
            save_image_grid((0.5 + 0.5 * w).reshape(-1, *data.shape), ctx.out / name,
                            nrow=int(math.ceil(math.sqrt(units))), title=f"encoder filters, λ = {lam:g}")
            figures.append(name)
    summary = _summary(ctx, cfg, data.name, units, rows, chosen, steps)
    elapsed = time.perf_counter() - t_start
    summary += f"\n\nWall time {elapsed:.0f} s (the data load, training, the Jacobians and the figures)."
    return ExperimentResult("contractive", rows, summary, figures,
                            {"chosen_lambda": chosen, "units": units, "seconds": elapsed})


def _summary(ctx: ExperimentContext, cfg: ContractiveConfig, name: str, units: int, rows: list[dict[str, Any]],
             chosen: float, steps: int) -> str:
    def seq(key: str, fmt: str) -> str:
        return " → ".join(format(r[key], fmt) for r in rows)

    base, top = rows[0], rows[-1]
    jac = [r["test_jacobian_sq_frobenius"] for r in rows]
    err = [r["test_sse_per_image"] for r in rows]
    lower = all(j < base["test_jacobian_sq_frobenius"] for j in jac[1:])
    ratio = top["test_jacobian_sq_frobenius"] / max(base["test_jacobian_sq_frobenius"], 1e-30)
    short = too_short(ctx, steps, cfg.min_steps)
    noisy = f"test_sse_noisy_{cfg.noise:g}"
    text = (
        f"One-hidden-layer contractive AE ({units} sigmoid units, tied weights) on {name}, {cfg.epochs} epochs "
        f"({steps:,} steps) per λ.  As λ goes {seq('lambda', 'g')}, the mean ‖J_f(x)‖²_F on the test inputs goes "
        f"{seq('test_jacobian_sq_frobenius', '.3g')} "
        f"({'monotonically falling' if _monotone(jac, increasing=False) else 'NOT monotone'}) and the test "
        f"error {seq('test_sse_per_image', '.2f')} "
        f"({'monotonically rising' if _monotone(err) else 'not monotone'}); from inputs with Gaussian noise "
        f"σ = {cfg.noise:g}: {seq(noisy, '.2f')}.\n\n"
    )
    text += finding(
        "the penalty lowers the encoder's Jacobian norm on test inputs", lower,
        f"every λ > 0 gives a lower mean ‖J‖²_F than λ = 0 ({base['test_jacobian_sq_frobenius']:.3g}); at λ = "
        f"{top['lambda']:g} it is {100 * ratio:.2g}% of it, at a test error of {top['test_sse_per_image']:.2f} "
        f"vs {base['test_sse_per_image']:.2f} ({100 * (top['test_sse_per_image'] / base['test_sse_per_image'] - 1):+.0f}%)"
        if lower else f"λ = 0 gives {base['test_jacobian_sq_frobenius']:.3g}, the others "
                      f"{', '.join(format(j, '.3g') for j in jac[1:])} (threshold: every λ > 0 below λ = 0)",
        negation="the penalty does NOT lower the Jacobian norm at every λ", short=short)
    text += (f"\n\nOn the validation split, the largest λ whose error is within {100 * cfg.val_tolerance:.0f}% of "
             f"λ = 0's is λ = {chosen:g} (validation errors {seq('val_sse_per_image', '.2f')}).")
    text += " " + _choice_note(rows, chosen, cfg.val_tolerance)
    return text


def _choice_note(rows: list[dict[str, Any]], chosen: float, tolerance: float) -> str:
    """What the validation choice means: no penalty (λ = 0: every λ > 0 costs more than the tolerance), or the
    chosen λ's share of λ = 0's test Jacobian norm, and how close the next λ came to the tolerance."""
    base = next(r for r in rows if r["lambda"] == 0)  # as pick_lambda finds it (not necessarily the first row)
    limit = (1 + tolerance) * base["val_sse_per_image"]
    nxt = min((r for r in rows if r["lambda"] > chosen), key=lambda r: r["lambda"], default=None)
    after = (f" The next λ, {nxt['lambda']:g}, has a validation error of {nxt['val_sse_per_image']:.4f} against the "
             f"limit {limit:.4f}." if nxt else "")
    if chosen == 0:
        return ("So on this grid no penalty passes the rule: every λ > 0 costs more than "
                f"{100 * tolerance:.0f}% of the unpenalised error, and the rule gives no default λ > 0." + after)
    r = next(r for r in rows if r["lambda"] == chosen)
    share = r["test_jacobian_sq_frobenius"] / max(base["test_jacobian_sq_frobenius"], 1e-30)
    return (f"At λ = {chosen:g} the test ‖J‖²_F is {100 * share:.0f}% of λ = 0's, at a test error "
            f"{100 * (r['test_sse_per_image'] / base['test_sse_per_image'] - 1):+.0f}% above it." + after)
