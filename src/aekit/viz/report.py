"""A run's static HTML report: PNG figures next to ``report.html`` in the run directory.

The page is self-contained (inline CSS, no scripts, nothing fetched) and references its figures by relative
file names, so a run directory can be copied or zipped and still opened anywhere.
"""

from __future__ import annotations

import dataclasses
import html
import json
import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from .. import latent
from ..data import Dataset, to_float
from ..evaluate import reconstruction_errors
from ..fileio import atomic_write_text
from . import plots

if TYPE_CHECKING:
    from ..train.run import Run

log = logging.getLogger(__name__)

__all__ = ["REPORT", "write_report"]

REPORT = "report.html"

# one-line meaning of the evaluation fields (units included); {space}: the input scale, {inactive}: the activity
# threshold, {tol}: the boundary tolerance.  A key missing here takes the model's own ``units`` entry, else no note.
_METRIC_NOTES = {
    "n": "number of samples evaluated",
    "split": "dataset split evaluated",
    "data": "dataset name",
    "sse_per_image": "sum of squared errors (SSE) per sample, averaged over samples ({space})",
    "mse": "mean squared error per input element: sse_per_image / D ({space})",
    "elbo": "evidence lower bound on log p(x), nats per sample (higher is better)",
    "elbo_stderr": "Monte-Carlo standard error of elbo over the posterior draws (not the test-set sampling error)",
    "elbo_draws": "posterior draws per sample averaged in elbo, recon and kl",
    "recon": "reconstruction term of the loss per sample (−log p(x|z) in nats for likelihood models)",
    "kl": "KL(q(z|x) ‖ p(z)), nats per sample",
    "loss": "the training objective per sample (lower is better)",
    "sparsity": "weighted sparsity penalty on the code, per sample",
    "nll": "importance-weighted (IWAE) estimate of −log p(x), nats per sample (lower is better)",
    "bits_per_dim": "nll / (D·ln 2): bits per input element of the model's likelihood",
    "active_units": "latent units with Var_x(E_q[z_j]) > 0.01 (Burda et al. 2016)",
    "kl_per_dim": "E_x KL(q(z_j|x) ‖ N(0, 1)) per latent unit, nats",
    "posterior_collapse": "posterior-collapse check of the VAE's code (active units and KL against a threshold)",
    "mean_abs_activation": "mean |a| of the code activations a = embed(x), over the samples and the code units "
                           "(code units)",
    "fraction_inactive": "share of the (sample, unit) code activations with |a| < {inactive}, in [0, 1]",
    "dead_units": "code units with |a| < {inactive} on every sample of the split: units the model never uses",
    "corruption": "the corruption applied to the inputs (kind:level) for sse_per_image_corrupted",
    "sse_per_image_corrupted": "SSE per sample between the reconstruction of corrupted inputs and the clean inputs, "
                               "averaged over samples ({space})",
    "tolerance_px": "boundary tolerance of boundary_f1, pixels",
    "miou": "mean intersection-over-union over classes, all pixels of the split (background included)",
    "dice": "mean Dice / F1 over classes, all pixels of the split",
    "pixel_accuracy": "share of correctly labelled pixels",
    "boundary_f1": "boundary F1 (BF score) with a {tol}-pixel tolerance, mean over classes",
    "ce": "per-pixel cross-entropy, nats per pixel (mean over a sample's pixels)",
    "dice_loss": "1 − soft Dice over the foreground classes, per sample",
}
# per-class score dictionaries of a segmentation evaluation: key -> column heading of the per-class table
_PER_CLASS = {"iou_per_class": "IoU", "dice_per_class": "Dice", "boundary_f1_per_class": "boundary F1"}


@dataclasses.dataclass
class _Figure:
    file: str
    caption: str


def _atomic_write_text(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.6g}" if math.isfinite(v) else str(v)
    return str(v)


def _class_name(dataset: Dataset, label: int) -> str:
    if dataset.classes is not None and 0 <= label < len(dataset.classes):
        return str(dataset.classes[label])
    return str(label)


def _pick_reconstruction_indices(y: torch.Tensor | None, n_total: int, n: int) -> list[int]:
    """Up to ``n`` test indices, one per class first (so different labels show), then in order."""
    n = min(n, n_total)
    if y is None:
        return list(range(n))
    yl = y.tolist()
    chosen: list[int] = []
    seen: set[int] = set()
    for i, lab in enumerate(yl):
        if lab not in seen:
            seen.add(lab)
            chosen.append(i)
            if len(chosen) == n:
                return chosen
    taken = set(chosen)
    rest = [i for i in range(n_total) if i not in taken]
    return sorted(chosen + rest[: n - len(chosen)])


def _interpolation_pair(y: torch.Tensor | None, n_total: int) -> tuple[int, int] | None:
    if n_total < 2:
        return None
    if y is None:
        return 0, 1
    first = int(y[0])
    diff = (y != first).nonzero()
    return (0, int(diff[0, 0])) if len(diff) else (0, 1)


@torch.no_grad()
def write_report(run: Run, dataset: Dataset, split: str = "test", *, max_points: int = 2000, n_recon: int = 10,
                 n_samples: int = 64, seed: int = 0) -> Path:
    """Write the figures and ``report.html`` of ``run`` into ``run.path``; returns the report's path.

    Figures: training curves, reconstructions, latent scatter (≤ ``max_points`` codes of ``split``), error
    histogram, interpolation, and for generative image models samples (and the latent manifold when the
    latent space is 2-D).  A figure that cannot be drawn is logged and noted on the page; the report is still
    written.  The model is left in eval mode.
    """
    if run.path is None:
        raise ValueError("the run has no directory (run.path is None): nothing to write the report into")
    out = Path(run.path)
    out.mkdir(parents=True, exist_ok=True)
    model = run.model
    model.eval()
    s = dataset.split(split)
    if s.y is not None and s.y.ndim > 1:  # segmentation masks, not per-sample labels
        s = dataclasses.replace(s, y=None)
    is_image = dataset.kind == "image"
    space = "inputs scaled to [0, 1]" if is_image else "standardised units"
    value_label = "value (standardised units)"
    n_total = len(s)
    rng = np.random.default_rng(seed)
    sub = np.sort(rng.choice(n_total, max_points, replace=False)) if n_total > max_points else np.arange(n_total)
    sub_t = torch.from_numpy(sub)
    x_sub = s.x[sub_t]
    y_sub = None if s.y is None else s.y[sub_t]
    cond = model.conditional  # a conditional model encodes / decodes the split's rows with their own labels
    if cond and s.y is None:
        raise ValueError(f"the {split} split has no labels: a conditional model's report needs them")
    ys = s.y if s.y is not None else torch.zeros(n_total, dtype=torch.long)  # the labels (conditional models)

    figures: list[_Figure] = []
    failures: list[str] = []

    def add(name: str, caption: str, draw: Callable[[Path], Any]) -> None:
        try:
            draw(out / name)
        except Exception as e:  # one broken figure must not lose the rest of the report
            log.warning("report: could not draw %s: %s", name, e, exc_info=log.isEnabledFor(logging.DEBUG))
            failures.append(f"{name}: {type(e).__name__}: {e}")
            return
        figures.append(_Figure(name, caption))

    # training curves
    if run.metrics and plots.loss_terms(run.metrics):
        add("losses.png", "Training (solid) and validation (dashed) loss terms per epoch, per-sample averages.",
            lambda p: plots.plot_losses(run.metrics, p))

    if model.supervised:  # segmentation: masks overlaid on test images instead of the AE figures
        from .segmentation import segmentation_figures

        for name, caption, draw in segmentation_figures(model, dataset, split):
            add(name, caption, draw)
        path = out / REPORT
        _atomic_write_text(path, _render_html(run, dataset, split, figures, failures, space))
        log.info("wrote %s (%d figures)", path, len(figures))
        return path

    # reconstructions
    idx = _pick_reconstruction_indices(s.y, n_total, n_recon)
    if idx:
        def draw_recon(p: Path) -> None:
            xb = to_float(s.x[torch.tensor(idx)]).to(model.device)
            rb = model.reconstruct(xb, **model.label_kwargs(ys[torch.tensor(idx)] if cond else None)).float().cpu()
            names = [f"{split} #{i}" + ("" if s.y is None else f" (class {_class_name(dataset, int(s.y[i]))})")
                     for i in idx]
            plots.plot_reconstructions(xb.cpu(), rb, p, n=len(idx), feature_names=dataset.feature_names,
                                       sample_names=names, value_label=value_label)

        what = ("Test images (top) and their reconstructions (bottom)" if is_image else
                "Original (solid) vs reconstructed (dashed) feature vectors of a few test rows, standardised units")
        add("reconstructions.png", f"{what}; {split} split.", draw_recon)

    # samples (generative image models)
    if model.generative and is_image and cond:  # one row per class: prior draws decoded with that class
        names = model.label_names
        per = max(1, min(10, n_samples // max(1, len(names))))
        add("samples.png", f"{per} samples per class decoded from {model.prior_name} with the class label "
            f"(seed {seed}): one row per class, {', '.join(names)} from the top.",
            lambda p: plots.plot_samples(latent.sample(model, per * len(names), seed=seed,
                                                       labels=torch.arange(len(names)).repeat_interleave(per)
                                                       ).float().cpu(), p, nrow=per,
                                         title="samples from the prior, one row per class"))
    elif model.generative and is_image:
        add("samples.png", f"{n_samples} samples decoded from {model.prior_name} (seed {seed}).",
            lambda p: plots.plot_samples(latent.sample(model, n_samples, seed=seed).float().cpu(), p,
                                         title="samples from the prior"))

    # interpolation
    pair = _interpolation_pair(s.y, n_total)
    if pair is not None:
        a, b = pair
        if s.y is not None:
            ttl = f"{_class_name(dataset, int(s.y[a]))} → {_class_name(dataset, int(s.y[b]))}"
        else:
            ttl = f"{split} sample {a} → {split} sample {b}"

        def draw_interp(p: Path) -> None:
            xa = to_float(s.x[a : a + 1])[0]
            xb = to_float(s.x[b : b + 1])[0]
            labels = (int(ys[a]), int(ys[b])) if cond else None  # the path decoded with the class of a
            strip = latent.interpolate(model, xa, xb, steps=10, labels=labels).float().cpu()
            plots.plot_interpolation(strip, p, title=f"interpolation {ttl}", value_label=value_label)

        add("interpolation.png",
            f"Decoded points on the straight line between the codes of two {split} samples ({ttl}), "
            "10 steps.", draw_interp)

    # latent scatter
    if len(sub):
        k = model.latent_dim
        how = "" if k <= 2 else f" projected on their first two principal components (latent dim {k})"
        if k == 1:
            how = " (1-D codes against random vertical jitter)"

        def draw_scatter(p: Path) -> None:
            codes = latent.encode_all(model, x_sub, labels=y_sub if cond else None)
            plots.plot_latent_scatter(codes, y_sub, dataset.classes, p,
                                      title=f"{run.model_name} codes of {len(sub)} {split} samples",
                                      max_points=max_points, seed=seed)

        add("latent.png", f"Deterministic codes of {len(sub)} {split} samples{how}"
            + (", coloured by label." if y_sub is not None else "."), draw_scatter)

    # manifold (2-D latent generative image models)
    if is_image and model.generative and model.latent_vectors and model.latent_dim == 2 and not cond:
        add("manifold.png", "Images decoded from a 15×15 grid of N(0, 1) quantiles (0.05 … 0.95) of the 2-D "
            "latent space (Kingma & Welling, 2014).", lambda p: plots.plot_manifold(model, p, n=15))

    # traversals (generative image models): rows = latent units by KL, highest first
    if is_image and model.generative and model.latent_vectors and len(sub) and idx:
        from .traversal import traversal_figure

        n_rows = min(10, model.latent_dim)
        add("traversals.png", f"Latent traversals around the code of {split} #{idx[0]}: each of the {n_rows} "
            "units with the highest KL (nats, over the shown samples) swept from −3 to 3, one row each, the "
            "others fixed" + (f", decoded with its own class ({_class_name(dataset, int(ys[idx[0]]))})" if cond
                              else "") + ".",
            lambda p: traversal_figure(model, to_float(s.x[idx[0] : idx[0] + 1])[0], x_sub, p, n_dims=n_rows,
                                       label=int(ys[idx[0]]) if cond else None,
                                       reference_labels=y_sub if cond else None))

    # error histogram
    if len(sub):
        unit = "image" if is_image else "row"

        def draw_errors(p: Path) -> None:
            errs = reconstruction_errors(model, x_sub, labels=y_sub if cond else None)
            plots.plot_error_histogram(errs, p, y_sub, classes=dataset.classes, xlabel=f"SSE per {unit} ({space})",
                                       title=f"reconstruction error: SSE per {unit} (n = {len(errs)})")

        add("errors.png", f"Per-sample reconstruction error (sum of squared errors per {unit}, {space}) of "
            f"{len(sub)} {split} samples" + ("; right: mean per class." if y_sub is not None else "."),
            draw_errors)

    page = _render_html(run, dataset, split, figures, failures, space)
    path = out / REPORT
    _atomic_write_text(path, page)
    log.info("wrote %s (%d figures)", path, len(figures))
    return path


# ----------------------------------------------------------------------------------------------- HTML

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;max-width:1100px;margin:2em auto;
padding:0 1em;color:#1d1d1f;line-height:1.45}
h1{font-size:1.6em;margin-bottom:.2em}h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #ddd}
.sub{color:#666;margin-top:0}
table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.3em .7em;text-align:left;vertical-align:top}
th{background:#f4f4f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
td.note{color:#555;font-size:.92em}
figure{margin:1.2em 0;padding:.6em;border:1px solid #eee;border-radius:6px;background:#fff}
figure img{max-width:100%;height:auto;display:block;margin:0 auto}
figcaption{color:#444;font-size:.93em;margin-top:.4em}
pre{background:#f6f8fa;padding:.8em;overflow:auto;font-size:.85em}
details summary{cursor:pointer;font-weight:600}
.warn{color:#8a4b00;background:#fff6e5;padding:.5em .8em;border-radius:4px}
.banner{color:#7a1010;background:#fdecea;border:2px solid #d93025;padding:.7em 1em;border-radius:6px;margin:1em 0}
"""


def _e(v: Any) -> str:
    """Escape text content (quotes stay readable)."""
    return html.escape(str(v), quote=False)


def _attr(v: Any) -> str:
    """Escape an attribute value."""
    return html.escape(str(v), quote=True)


def _rounded(v: Any) -> Any:
    """``v`` with every float rounded to 6 significant digits (nested lists / dicts too), for JSON cells."""
    if isinstance(v, float):
        return float(f"{v:.6g}") if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return {k: _rounded(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_rounded(x) for x in v]
    return v


def _note(key: str, evaluation: dict[str, Any], space: str, units: dict[str, str]) -> str:
    from ..models.ae import INACTIVE

    note = _METRIC_NOTES.get(key) or units.get(key, "")
    return note.format(space=space, inactive=INACTIVE, tol=evaluation.get("tolerance_px", 2))


def _metrics_table(evaluation: dict[str, Any], space: str, units: dict[str, str] | None = None) -> str:
    """One row per evaluation field (per-class dictionaries excepted: see :func:`_per_class_table`)."""
    rows = []
    for key, value in evaluation.items():
        if key in _PER_CLASS and isinstance(value, dict):
            continue
        note = _note(key, evaluation, space, units or {})
        if key == "posterior_collapse" and isinstance(value, dict):  # the rule as the note, the facts as value
            value = ("collapsed" if value.get("collapsed") else "not collapsed") + ": " + _collapse_facts(value)
            note = f"{note}; {evaluation['posterior_collapse'].get('rule', '')}".rstrip("; ")
        elif isinstance(value, (dict, list, tuple)):
            value = json.dumps(_rounded(value), ensure_ascii=False)
        cls = "num" if isinstance(value, (int, float)) and not isinstance(value, bool) else ""
        rows.append(f"<tr><th>{_e(key)}</th><td class=\"{cls}\">{_e(_fmt(value))}</td>"
                    f"<td class=\"note\">{_e(note)}</td></tr>")
    return "<table><tr><th>metric</th><th>value</th><th>meaning</th></tr>\n" + "\n".join(rows) + "\n</table>"


def _per_class_table(evaluation: dict[str, Any], classes: Sequence[str] | None) -> str:
    """The per-class scores of a segmentation evaluation as one table (a row per class, 4 decimals); ``""`` when
    the evaluation has none.  Class ids are named after the data's classes when it has names."""
    cols = [(k, head) for k, head in _PER_CLASS.items() if isinstance(evaluation.get(k), dict)]
    if not cols:
        return ""
    names: list[str] = []
    for k, _ in cols:
        names += [n for n in evaluation[k] if n not in names]

    def shown(name: str) -> str:
        if classes is not None and name.isdigit() and int(name) < len(classes):
            return str(classes[int(name)])
        return name

    def cell(v: Any) -> str:
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            return f"<td class=\"num\">{v:.4f}</td>"
        return "<td class=\"num\">–</td>"

    tol = evaluation.get("tolerance_px")
    heads = "".join(f"<th>{_e(head)}{_e(f' ({tol} px)') if k == 'boundary_f1_per_class' and tol is not None else ''}"
                    f"<br><code>{_e(k)}</code></th>" for k, head in cols)
    body = "".join(f"<tr><th>{_e(shown(n))}</th>" + "".join(cell(evaluation[k].get(n)) for k, _ in cols) + "</tr>"
                   for n in names)
    return ("<p>Per class (every pixel of the split; – : the class is in neither the ground truth nor the "
            f"prediction):</p><table><tr><th>class</th>{heads}</tr>{body}</table>")


def _collapse_banner(evaluation: dict[str, Any] | None) -> str:
    """A warning banner when the evaluation's ``posterior_collapse`` check says collapsed; ``""`` otherwise
    (also for evaluations written before the check existed)."""
    pc = (evaluation or {}).get("posterior_collapse")
    if not isinstance(pc, dict) or pc.get("collapsed") is not True:
        return ""
    parts = [f"<b>Posterior collapse:</b> {_e(_collapse_facts(pc))}."]
    if pc.get("rule"):
        parts.append(f"Rule: {_e(pc['rule'])}.")
    hint = str(pc.get("hint") or "")
    if hint:
        parts.append(_e(hint[:1].upper() + hint[1:]) + ("" if hint.endswith(".") else "."))
    return f"<div class=\"banner\" role=\"alert\">{' '.join(parts)}</div>"


def _collapse_facts(pc: dict[str, Any]) -> str:
    def num(key: str, fmt: str) -> str:
        v = pc.get(key)
        return format(v, fmt) if isinstance(v, (int, float)) and not isinstance(v, bool) else "?"

    return (f"{num('active_units', 'd')} of {num('latent_dim', 'd')} latent units are active and the KL is "
            f"{num('kl_nats', '.4g')} nats per sample (threshold {num('kl_threshold_nats', '.4g')} nats)")


def _units_text(model: Any, dataset: Dataset, evaluation: dict[str, Any]) -> str:
    """The paragraph above the evaluation table: what the figures are and their units, for this kind of model."""
    if model.supervised:
        tol = evaluation.get("tolerance_px", 2)
        text = ("<p>Segmentation scores are computed over every pixel of the split at once (counts summed over the "
                "images, then turned into ratios): IoU, Dice, pixel accuracy and boundary F1 lie in [0, 1], higher "
                f"is better; a boundary pixel counts as matched within {_e(tol)} px of a ground-truth boundary of "
                "its class.")
    else:
        scale = "image on [0, 1]-scaled inputs" if dataset.kind == "image" else "row in standardised units"
        text = (f"<p>Units: <code>sse_per_image</code> is the sum of squared errors per {scale}, averaged over the "
                "evaluated samples.")
    terms = [(k, v) for k, v in model.units.items() if k in evaluation]
    if terms:  # the model's own loss terms, in its declared units
        text += " The model's loss terms and their units: " + "; ".join(f"<code>{_e(k)}</code>: {_e(v)}"
                                                                         for k, v in terms) + "."
    return text + "</p>"


def _training_table(metrics: list[dict[str, float]]) -> str:
    last = metrics[-1]
    terms = plots.loss_terms(metrics)
    if not terms:
        return ""
    head = "<tr><th>term</th><th>train</th><th>val</th></tr>"
    body = "".join(
        f"<tr><th>{_e(t)}</th><td class=\"num\">{_e(_fmt(last.get('train_' + t, '–')))}</td>"
        f"<td class=\"num\">{_e(_fmt(last.get('val_' + t, '–')))}</td></tr>" for t in terms
    )
    return f"<table>{head}{body}</table>"


def _model_facts(model: Any, n_params: int) -> str:
    """The header's description of the model: what its output is, and its size."""
    if model.supervised:
        what = f"segmentation, {model.num_classes} classes per pixel"
    elif model.latent_vectors:
        what = f"latent dim {model.latent_dim}"
    else:
        what = ""
    return ", ".join(p for p in (what, f"{n_params:,} parameters") if p)


def _render_html(run: Run, dataset: Dataset, split: str, figures: list[_Figure], failures: list[str],
                 space: str) -> str:
    try:
        cfg = run.config_dict()
    except Exception as e:  # pragma: no cover - config_dict only formats dataclasses
        cfg = {"error": f"could not format the configuration: {e}"}
    cfg_text = json.dumps(cfg, indent=2, default=str)
    spec = getattr(run.data_config, "spec", dataset.name)
    title = f"{run.model_name} on {spec}"
    model = run.model
    n_params = sum(p.numel() for p in model.parameters())
    parts = [
        "<!DOCTYPE html>",
        "<html lang=\"en\"><head><meta charset=\"utf-8\">",
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">",
        f"<title>aekit report: {_e(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>aekit report: {_e(title)}</h1>",
        f"<p class=\"sub\">run directory <code>{_e(run.path)}</code> · model <b>{_e(run.model_name)}</b> "
        f"({_e(_model_facts(model, n_params))}) · data <b>{_e(spec)}</b> "
        f"({_e(dataset.kind)}, shape {_e('×'.join(str(d) for d in dataset.shape))}, "
        f"{_e(len(dataset.train))}/{_e(len(dataset.val))}/{_e(len(dataset.test))} train/val/test"
        + (f", {_e(len(dataset.classes))} classes" if dataset.classes else "") + ")</p>",
    ]
    banner = _collapse_banner(run.evaluation)
    if banner:
        parts.append(banner)
    parts.append("<h2>Evaluation</h2>")
    if run.evaluation:
        parts.append(_units_text(model, dataset, run.evaluation))
        parts.append(_metrics_table(run.evaluation, space, dict(model.units)))
        per_class = _per_class_table(run.evaluation, dataset.classes)
        if per_class:
            parts.append(per_class)
    else:
        parts.append("<p>No evaluation recorded for this run (run <code>aekit evaluate</code>).</p>")
    parts.append("<h2>Training</h2>")
    if run.metrics:
        parts.append(f"<p>{_e(len(run.metrics))} epoch(s) recorded; final epoch "
                     f"{_e(_fmt(run.metrics[-1].get('epoch', len(run.metrics))))}:</p>")
        parts.append(_training_table(run.metrics))
    else:
        parts.append("<p>No training metrics recorded.</p>")
    parts.append("<details><summary>Resolved configuration (model / train / data)</summary>"
                 f"<pre>{_e(cfg_text)}</pre></details>")
    parts.append("<h2>Figures</h2>")
    if failures:
        items = "".join(f"<li>{_e(f)}</li>" for f in failures)
        parts.append(f"<div class=\"warn\">Some figures could not be drawn:<ul>{items}</ul></div>")
    for f in figures:
        parts.append(f"<figure><img src=\"{_attr(f.file)}\" alt=\"{_attr(f.caption)}\">"
                     f"<figcaption><b>{_e(f.file)}</b>: {_e(f.caption)}</figcaption></figure>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
