"""ONNX export: ``aekit export RUN --onnx DIR`` (:mod:`aekit.cli.export`) writes ``encoder.onnx``, ``decoder.onnx``
and ``onnx.json``; this module is the library part.

- ``encoder.onnx``: input ``x`` (N, *input_shape) float32 (images in [0, 1], tables standardised as at
  training time) → ``z`` (N, latent_dim), the deterministic code (``embed``); for a VAE → ``mean`` and
  ``logvar`` of q(z|x) (``mean`` is the code that ``aekit encode`` writes).
- ``decoder.onnx``: input ``z`` (N, latent_dim) → ``x`` (N, *input_shape), the mean of p(x|z) (``decode``).
- a ``conditional`` model (cVAE) has a second input ``labels`` (N,) int64 class ids in both graphs: ``x``,
  ``labels`` → ``mean``, ``logvar`` of q(z|x, y), and ``z``, ``labels`` → ``x``; ``onnx.json`` lists the
  ``class_names`` in id order.
- a model whose decoder needs more than a code (a U-Net: skip features) is exported whole instead:
  ``model.onnx``, ``x`` → ``y`` (e.g. per-pixel class probabilities).
- ``onnx.json``: shapes, names, the run's model name and the largest difference to PyTorch measured with
  onnxruntime when it is installed (the export fails when that exceeds the tolerance).

The batch axis is dynamic.  Needs the ``onnx`` extra (``pip install 'aekit[onnx]'``: onnx, onnxruntime and
onnxscript, which torch's exporter uses).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn as nn

from .errors import AekitError, ConfigError
from .fileio import atomic_write_text
from .models.base import Autoencoder

log = logging.getLogger(__name__)

ENCODER, DECODER, FORWARD, MANIFEST = "encoder.onnx", "decoder.onnx", "model.onnx", "onnx.json"
TOLERANCE = 1e-4


class EncoderGraph(nn.Module):
    """The encoder as a graph with plain tensor outputs: the code, or (mean, logvar) for a posterior; a
    ``conditional`` model's graph also takes the class ids ``labels``."""

    def __init__(self, model: Autoencoder, posterior: bool):
        super().__init__()
        self.model = model
        self.posterior = posterior

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> Any:
        kw = self.model.label_kwargs(labels)
        if self.posterior:
            q = self.model.encode(x, **kw)
            return q.mean, q.logvar
        return self.model.embed(x, **kw)


class ForwardGraph(nn.Module):
    """The whole model, input → output (for models whose decoder does not take a plain code, e.g. a U-Net)."""

    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class DecoderGraph(nn.Module):
    def __init__(self, model: Autoencoder):
        super().__init__()
        self.model = model

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.decode(z, **self.model.label_kwargs(labels))


def example_labels(model: Autoencoder, n: int = 3) -> tuple[torch.Tensor, ...]:
    """The extra graph inputs of ``model``: ``(labels,)``, class ids 0, 1, … (mod K) for a ``conditional``
    model, ``()`` for any other."""
    return (torch.arange(n) % len(model.label_names),) if model.conditional else ()


def example_input(model: Autoencoder, n: int = 3, seed: int = 0) -> torch.Tensor:
    """Reproducible inputs of the model's shape: uniform [0, 1] for images, standard normal for tables."""
    g = torch.Generator().manual_seed(seed)
    shape = (n, *model.input_shape)
    return torch.rand(shape, generator=g) if len(model.input_shape) > 1 else torch.randn(shape, generator=g)


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """torch's exporter prints progress (stdout and stderr) and logs optional-op warnings: keep them out of the
    CLI.  Exceptions still propagate."""
    loggers = [logging.getLogger(n) for n in ("torch.onnx", "torch.export", "onnxscript", "onnx_ir")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


def _export(module: nn.Module, example: torch.Tensor, path: Path, in_name: str, out_names: list[str],
            exporter: str, opset: int | None, extra: tuple[torch.Tensor, ...] = ()) -> None:
    """Export ``module`` with input ``in_name`` (and ``labels`` when ``extra`` holds a conditional model's)."""
    names = [in_name, "labels"][: 1 + len(extra)]
    kwargs: dict[str, Any] = {"input_names": names, "output_names": out_names}
    if opset is not None:
        kwargs["opset_version"] = opset
    if exporter == "dynamo":
        batch = torch.export.Dim("batch")
        kwargs["dynamic_shapes"] = {in_name: {0: batch}, **({"labels": {0: batch}} if extra else {})}
        # one self-contained file (weights inside) unless the model is near protobuf's 2 GB limit
        size = sum(p.numel() * p.element_size() for p in module.parameters())
        kwargs["external_data"] = size > 1 << 30
    else:
        kwargs["dynamic_axes"] = {n: {0: "batch"} for n in (*names, *out_names)}
    try:
        with _quiet_exporter():
            torch.onnx.export(module, (example, *extra), str(path), dynamo=exporter == "dynamo", **kwargs)
    except ModuleNotFoundError as e:
        raise AekitError(f"ONNX export needs the {e.name!r} package: pip install 'aekit[onnx]'") from None


def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def check_onnx(model: Autoencoder, out_dir: Path, n: int = 5, seed: int = 1) -> dict[str, float]:
    """Largest absolute differences between onnxruntime and PyTorch on fresh inputs (batch size ``n``)."""
    out_dir = Path(out_dir)
    manifest = json.loads((out_dir / MANIFEST).read_text())
    x = example_input(model, n, seed)
    if manifest.get("graph") == "forward":
        (y,) = _ort_session(out_dir / FORWARD).run(None, {"x": x.numpy()})
        with torch.no_grad():
            return {"model.y": float((torch.from_numpy(y) - model(x)).abs().max())}
    extra = example_labels(model, n)
    feeds = {"labels": extra[0].numpy()} if extra else {}
    enc = _ort_session(out_dir / ENCODER).run(None, {"x": x.numpy(), **feeds})
    with torch.no_grad():
        ref = EncoderGraph(model, manifest["posterior"]).eval()(x, *extra)
    ref = list(ref) if isinstance(ref, tuple) else [ref]
    diffs = {f"encoder.{name}": float((torch.from_numpy(a) - r).abs().max())
             for name, a, r in zip(manifest["encoder_outputs"], enc, ref)}
    z = ref[0]
    dec = _ort_session(out_dir / DECODER).run(None, {"z": z.numpy(), **feeds})[0]
    with torch.no_grad():
        diffs["decoder.x"] = float((torch.from_numpy(dec) - DecoderGraph(model)(z, *extra)).abs().max())
    return diffs


def _cpu_copy(model: Autoencoder) -> Autoencoder:
    """An eval-mode copy of ``model`` on the CPU; the model itself keeps its device and its train/eval mode.

    Parameters and buffers are copied straight to the CPU (shared ones stay shared), so a model on a GPU is
    never duplicated there."""
    memo: dict[int, Any] = {}
    for prm in model.parameters():
        memo[id(prm)] = nn.Parameter(prm.detach().to("cpu", copy=True), requires_grad=prm.requires_grad)
    for buf in model.buffers():
        memo[id(buf)] = buf.detach().to("cpu", copy=True)
    return copy.deepcopy(model, memo).eval()


def export_onnx(model: Autoencoder, out_dir: str | Path, *, model_name: str | None = None,
                exporter: Literal["dynamo", "torchscript"] = "dynamo", opset: int | None = None,
                check: bool = True, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """Write ``encoder.onnx``, ``decoder.onnx`` and ``onnx.json`` into ``out_dir``; returns the manifest.

    A model whose decoder does not take a plain code (a U-Net: it also needs the skip features) is exported
    whole instead, as ``model.onnx`` (``x`` → ``y``, e.g. per-pixel class probabilities).

    With ``check`` (and onnxruntime installed) both graphs are run on fresh inputs and compared with PyTorch;
    a difference above ``tolerance`` raises :class:`AekitError`.
    """
    from .version import __version__

    if exporter not in ("dynamo", "torchscript"):
        raise ConfigError(f"--exporter {exporter!r}: choose dynamo or torchscript")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--onnx {out} is a file: give a directory")
    out.mkdir(parents=True, exist_ok=True)
    model = _cpu_copy(model)  # the caller's model keeps its device and its train/eval mode
    x = example_input(model)
    manifest: dict[str, Any] = {"aekit_version": __version__, "model": model_name or type(model).__name__.lower(),
                                "input_shape": list(model.input_shape), "batch_axis": "dynamic", "exporter": exporter}
    if model.latent_vectors:  # declared capabilities decide the graphs: encoder + decoder, or the whole model
        posterior = model.posterior
        enc_outputs = ["mean", "logvar"] if posterior else ["z"]
        extra = example_labels(model, len(x))  # a conditional model's class ids: a second input of both graphs
        _export(EncoderGraph(model, posterior).eval(), x, out / ENCODER, "x", enc_outputs, exporter, opset, extra)
        with torch.no_grad():
            z = EncoderGraph(model, posterior)(x, *extra)
            z = z[0] if posterior else z
        _export(DecoderGraph(model).eval(), z, out / DECODER, "z", ["x"], exporter, opset, extra)
        cond = ["labels"] if extra else []
        manifest.update({"graph": "autoencoder", "latent_dim": model.latent_dim, "posterior": posterior,
                         "encoder": ENCODER, "encoder_inputs": ["x", *cond], "encoder_outputs": enc_outputs,
                         "decoder": DECODER, "decoder_inputs": ["z", *cond], "decoder_outputs": ["x"]})
        if extra:
            manifest.update({"conditional": True, "labels": "int64 class ids (N,)",
                             "class_names": list(model.label_names)})
    else:
        _export(ForwardGraph(model).eval(), x, out / FORWARD, "x", ["y"], exporter, opset)
        manifest.update({"graph": "forward", "model_file": FORWARD, "inputs": ["x"], "outputs": ["y"]})
    atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    if check:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            log.warning("onnxruntime is not installed: the exported graphs were not checked against PyTorch")
        else:
            diffs = check_onnx(model, out)
            worst = max(diffs, key=diffs.__getitem__)
            if diffs[worst] > tolerance:
                raise AekitError(f"ONNX {worst} differs from PyTorch by {diffs[worst]:.3g} (> {tolerance:g}): "
                                 "try --exporter torchscript or report the model configuration")
            manifest["max_abs_diff"] = diffs
            atomic_write_text(out / MANIFEST, json.dumps(manifest, indent=2))
    return manifest
