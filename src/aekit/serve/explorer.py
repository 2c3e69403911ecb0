"""The explorer's state and operations, free of any web framework (the FastAPI layer is :mod:`.app`).

An :class:`Explorer` holds a model and (optionally) a data split, the codes of that split and their 2-D map
(the codes themselves when latent_dim = 2, else their first two principal components).  Its methods take and
return plain Python values; images travel as PNG data URLs (native resolution for images, a small bar chart
for table rows).  Problems the client caused raise :class:`RequestError` (HTTP 4xx, one-line message).

What the explorer offers follows from the model's declared capabilities (:mod:`aekit.models.base`): the latent
map, sliders and interpolation need ``latent_vectors``, sampling ``generative``, segmentation ``supervised``
(``model.predict(x)``: given float images (N, C, H, W) in [0, 1] it returns class ids (N, H, W), per-class
scores (N, K, H, W) (argmax) or one foreground map (N, 1, H, W) / (N, H, W) (probabilities thresholded at 0.5,
logits at 0)).  An uploaded image is segmented at its own size, as ``aekit segment`` does: one larger than the
training images tile by tile with :func:`aekit.infer.predict_tiled` (overlap-tile, exact for a U-Net), a smaller
one whole with ``model.predict``.

A ``conditional`` model (a cVAE) decodes with a class: ``info`` lists its ``label_names``; ``sample``,
``decode`` (the sliders), ``interpolate`` and ``encode`` take an optional ``label`` (a class id or name; the
page's class selector).  Without one, a datum of the split is encoded with its own label, sampling cycles
through the classes, and decoding a code or encoding an upload asks for one (422).
"""

from __future__ import annotations

import base64
import io
import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw, UnidentifiedImageError

from ..data import Dataset, to_float
from ..errors import AekitError
from ..infer import predict_tiled
from ..latent import encode_all, interpolation_labels, interpolation_path, traversal_labels
from ..models.base import Autoencoder

log = logging.getLogger(__name__)

MAX_SLIDERS = 10
UPLOAD_TYPES: dict[str, tuple[bytes, ...]] = {  # content type -> accepted leading bytes
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
}
MAX_UPLOAD_PIXELS = 4096 * 4096
# mask colours (RGB) for class ids 1, 2, ...; class 0 (background) stays transparent
PALETTE = np.array([[230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48], [145, 30, 180],
                    [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212]], dtype=np.uint8)


class RequestError(AekitError):
    """A bad request: the message names the problem and the fix; ``status`` is the HTTP status code."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


# ----------------------------------------------------------------------------------------------- images


def png_data_url(array: np.ndarray) -> str:
    """(H, W) or (H, W, 3|4) uint8 → ``data:image/png;base64,...``."""
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def image_to_uint8(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """One image (C, H, W) float in [0, 1] → (H, W) or (H, W, 3) uint8 (other channel counts: the first)."""
    a = x.detach().float().cpu().numpy() if torch.is_tensor(x) else np.asarray(x, dtype=np.float32)
    a = np.clip(np.nan_to_num(a, nan=0.0), 0.0, 1.0)
    a = (a * 255.0 + 0.5).astype(np.uint8)
    if a.ndim == 2:
        return a
    if a.shape[0] == 3:
        return a.transpose(1, 2, 0)
    if a.shape[0] == 4:
        return a[:3].transpose(1, 2, 0)
    return a[0]


def bar_chart(values: Sequence[float], width: int = 240, height: int = 96, span: float = 3.0) -> np.ndarray:
    """A table row as a bar chart (RGB uint8): one bar per feature, zero in the middle, ±``span`` clipped."""
    v = np.clip(np.nan_to_num(np.asarray(values, dtype=np.float64)), -span, span)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    mid = height / 2
    draw.line([(0, mid), (width, mid)], fill=(170, 170, 170))
    bw = width / max(1, len(v))
    for i, val in enumerate(v):
        y = mid - val / span * (mid - 2)
        x0, x1 = i * bw + 1, max(i * bw + 1, (i + 1) * bw - 1)
        draw.rectangle([x0, min(mid, y), x1, max(mid, y)], fill=(31, 119, 180) if val >= 0 else (214, 39, 40))
    return np.asarray(img)


# ----------------------------------------------------------------------------------------------- explorer


class Explorer:
    """A model plus the split it explores.  Thread-safe: model calls run under one lock."""

    def __init__(self, model: Autoencoder, data: Dataset | None = None, *, split: str = "test",
                 model_name: str | None = None, max_points: int = 5000, max_upload_bytes: int = 4 << 20):
        self.model = model.eval()
        self.device = _device(model)
        self.model_name = model_name or type(model).__name__.lower()
        self.max_upload_bytes = int(max_upload_bytes)
        self.lock = threading.Lock()
        self.split_name = split
        self.classes = data.classes if data is not None else None
        self.kind = data.kind if data is not None else ("image" if len(self._input_shape() or ()) == 3 else "table")
        self.can_segment = bool(model.supervised)
        self.conditional = bool(model.conditional)
        self.x: torch.Tensor | None = None
        self.y: torch.Tensor | None = None
        self.codes: torch.Tensor | None = None
        self.latent = self._probe_latent()
        if data is not None and self.latent:
            s = data.split(split)
            if tuple(s.x.shape[1:]) != tuple(model.input_shape):
                log.warning("data samples %s do not fit the model's input %s: no latent map",
                            tuple(s.x.shape[1:]), tuple(model.input_shape))
            else:
                self.x, self.y = s.x, s.y
                with self.lock, torch.no_grad():
                    self.codes = encode_all(model, s.x, labels=s.y if self.conditional else None)
        self._map(max_points)

    # ---- set-up

    def _input_shape(self) -> tuple[int, ...] | None:
        try:
            return tuple(int(v) for v in self.model.input_shape)
        except (AttributeError, TypeError):
            return None

    @torch.no_grad()
    def _probe_latent(self) -> bool:
        """Does the model map inputs to (N, latent_dim) codes and codes back to inputs?"""
        shape = self._input_shape()
        if not self.model.latent_vectors:
            return False
        try:
            dim = int(self.model.latent_dim)
            if not shape:
                return False
            kw = self.model.label_kwargs(0)  # a conditional model probed with its first class
            z = self.model.embed(torch.zeros(1, *shape, device=self.device), **kw)
            out = self.model.decode(z, **kw)
        except (AekitError, AttributeError, NotImplementedError, RuntimeError, TypeError, ValueError) as e:
            log.info("%s has no usable latent space (%s): latent views are off", self.model_name, e)
            return False
        return torch.is_tensor(z) and tuple(z.shape) == (1, dim) and tuple(out.shape[1:]) == shape

    def _map(self, max_points: int) -> None:
        from ..viz.plots import project_2d

        self.point_index = np.zeros(0, dtype=np.int64)
        self.xy = np.zeros((0, 2))
        self.axis_labels = ("", "")
        if self.codes is None or len(self.codes) == 0:
            return
        n = len(self.codes)
        keep = np.arange(n) if n <= max_points else np.sort(np.random.default_rng(0).choice(n, max_points, False))
        self.point_index = keep
        self.xy, self.axis_labels = project_2d(self.codes[keep].numpy())

    # ---- helpers

    def require_latent(self) -> None:
        if not self.latent:
            raise RequestError(f"model '{self.model_name}' has no latent space to encode to or decode from: "
                               "serve an autoencoder run (ae, vae, pca, ...)")

    def render(self, batch: torch.Tensor) -> list[str]:
        """PNG data URLs of a batch of model-space samples (images, or table rows as bar charts)."""
        b = batch.detach().float().cpu()
        if self.kind == "image" and b.ndim == 4:
            return [png_data_url(image_to_uint8(im)) for im in b]
        return [png_data_url(bar_chart(row)) for row in b.reshape(len(b), -1).numpy()]

    def grid(self, batch: torch.Tensor, nrow: int) -> str | None:
        from ..viz.plots import make_grid

        if self.kind != "image" or batch.ndim != 4:
            return None
        g = make_grid(batch.detach().float().cpu(), nrow=nrow, padding=1)
        a = np.clip(g * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return png_data_url(a[:, :, 0] if a.shape[2] == 1 else a)

    def _rows(self) -> torch.Tensor:
        if self.x is None:
            raise RequestError("no data is loaded for this run: encode uploaded images or decode codes instead")
        return self.x

    def _check_index(self, i: int) -> int:
        if self.x is None:
            raise RequestError("no data is loaded for this run: encode uploaded images or decode codes instead")
        if not 0 <= i < len(self.x):
            raise RequestError(f"index {i} is out of range: the {self.split_name} split has {len(self.x)} samples "
                               f"(0..{len(self.x) - 1})", 404)
        return i

    def _label(self, i: int) -> dict[str, Any]:
        if self.y is None:
            return {"label": None, "class_name": None}
        lab = int(self.y[i])
        name = self.classes[lab] if self.classes is not None and 0 <= lab < len(self.classes) else str(lab)
        return {"label": lab, "class_name": name}

    def _class(self, label: int | str | None, required: str | None = None) -> int | None:
        """The class id of a request's ``label`` (id or name) for a conditional model; None when not given
        (a 422 naming the classes when ``required`` names what needs it); a 400 for a model without classes."""
        if label is None:
            if self.conditional and required:
                raise RequestError(f"{required} with the conditional model '{self.model_name}' needs a label: send "
                                   f"label (one of {', '.join(self.model.label_names)}, or its id)", 422)
            return None
        if not self.conditional:
            raise RequestError(f"model '{self.model_name}' is not conditional: drop label", 400)
        try:
            return self.model.label_index(label, "label")
        except AekitError as e:
            raise RequestError(str(e), 422) from None

    def _row_labels(self, idx: Sequence[int], label: int | None) -> torch.Tensor | None:
        """Class ids of split rows ``idx``: ``label`` for all of them, else their own labels (conditional models)."""
        if not self.conditional:
            return None
        if label is not None:
            return torch.full((len(idx),), label, dtype=torch.long)
        if self.y is None:
            raise RequestError("the served split has no labels: send label (a class id or name)", 422)
        return self.y[torch.as_tensor(list(idx), dtype=torch.long)].long()

    def _z(self, rows: Sequence[Sequence[float]]) -> torch.Tensor:
        z = matrix(rows, int(self.model.latent_dim), "code", f"{self.model.latent_dim} numbers (the latent dimension)")
        return z.to(self.device)

    # ---- operations

    def info(self) -> dict[str, Any]:
        shape = self._input_shape()
        out: dict[str, Any] = {
            "model": self.model_name, "kind": self.kind, "input_shape": list(shape) if shape else None,
            "latent": self.latent, "latent_dim": int(self.model.latent_dim) if self.latent else None,
            "can_sample": bool(self.model.generative) and self.latent,
            "can_segment": self.can_segment, "split": self.split_name,
            "n_samples": 0 if self.x is None else len(self.x), "n_points": len(self.point_index),
            "classes": list(self.classes) if self.classes else None, "max_upload_bytes": self.max_upload_bytes,
            "upload_types": list(UPLOAD_TYPES), "sliders": [], "conditional": self.conditional,
            "label_names": list(self.model.label_names) if self.conditional else None,
        }
        if self.latent:
            k = min(MAX_SLIDERS, int(self.model.latent_dim))
            if self.codes is not None and len(self.codes) > 1:
                mean, std = self.codes.mean(0), self.codes.std(0).clamp_min(1e-3)
            else:
                mean, std = torch.zeros(self.model.latent_dim), torch.ones(self.model.latent_dim)
            out["sliders"] = [{"dim": d, "name": f"z{d}", "min": float(mean[d] - 3 * std[d]),
                               "max": float(mean[d] + 3 * std[d]), "center": float(mean[d])} for d in range(k)]
            out["code_center"] = mean.tolist()
        return out

    def points(self) -> dict[str, Any]:
        labels = None if self.y is None else self.y[torch.from_numpy(self.point_index)].tolist()
        return {"index": self.point_index.tolist(), "x": self.xy[:, 0].round(5).tolist(),
                "y": self.xy[:, 1].round(5).tolist(), "label": labels, "axis_labels": list(self.axis_labels),
                "classes": list(self.classes) if self.classes else None}

    @torch.no_grad()
    def item(self, i: int, label: int | str | None = None) -> dict[str, Any]:
        """Sample ``i``: its input, code and reconstruction.  A conditional model follows
        :func:`aekit.latent.traversal_labels` (the rule of ``aekit traverse --label``): the sample is encoded (and
        reconstructed) with its own label; the sliders then decode its code with the page's class (``decode``'s
        ``label``), which the page sets to the sample's own class.  ``label`` encodes a sample of an unlabelled
        split (required there), and is ignored when the sample has a label."""
        self.require_latent()
        i = self._check_index(i)
        x = to_float(self._rows()[i : i + 1]).to(self.device)
        c = self._class(label)
        enc: int | None = None
        if self.conditional:
            if self.y is None and c is None:
                raise RequestError("the served split has no labels: send label (a class id or name)", 422)
            enc = traversal_labels(None if self.y is None else int(self.y[i]), c)[0]
        kw = self.model.label_kwargs(None if enc is None else torch.tensor([enc]))
        with self.lock:
            z = self.model.embed(x, **kw)
            recon = self.model.decode(z, **kw)
        return {"index": i, **self._label(i), "code": z[0].tolist(), "input": self.render(x)[0],
                "reconstruction": self.render(recon)[0]}

    @torch.no_grad()
    def encode(self, indices: Sequence[int] | None = None, inputs: Sequence[Sequence[float]] | None = None,
               label: int | str | None = None) -> dict[str, Any]:
        self.require_latent()
        if indices is not None:
            idx = [self._check_index(i) for i in indices]
            x = to_float(self._rows()[idx])
            labels = self._row_labels(idx, self._class(label))
        else:
            d = self.model.input_dim
            x = matrix(inputs or [], d, "input", f"a flat list of {d} numbers (shape {list(self.model.input_shape)} "
                                                 "flattened, images in [0, 1])")
            x = x.view(-1, *self.model.input_shape)
            labels = self._row_labels(range(len(x)), self._class(label, "encoding inputs"))
        kw = self.model.label_kwargs(labels)
        with self.lock:
            z = self.model.embed(x.to(self.device), **kw)
            recon = self.model.decode(z, **kw)
        return {"codes": z.tolist(), "reconstructions": self.render(recon)}

    @torch.no_grad()
    def decode(self, rows: Sequence[Sequence[float]], values: bool = False,
               label: int | str | None = None) -> dict[str, Any]:
        self.require_latent()
        c = self._class(label, "decoding a code")
        z = self._z(rows)
        with self.lock:
            x = self.model.decode(z, **self.model.label_kwargs(c))
        out: dict[str, Any] = {"images": self.render(x)}
        if values:
            out["values"] = x.reshape(len(x), -1).tolist()
        return out

    @torch.no_grad()
    def sample(self, n: int, seed: int = 0, label: int | str | None = None, temperature: float = 1.0
               ) -> dict[str, Any]:
        self.require_latent()
        if not self.model.generative:
            raise RequestError(f"model '{self.model_name}' has no prior to sample from: serve a generative run "
                               "(e.g. a VAE)")
        c = self._class(label)
        g = torch.Generator(device=self.device).manual_seed(seed)
        labels = None  # a conditional model without a label: the classes in turn
        if self.conditional:
            labels = torch.full((n,), c, dtype=torch.long) if c is not None else \
                torch.arange(n) % len(self.model.label_names)
        with self.lock:
            x = self.model.sample(n, generator=g, **self.model.label_kwargs(labels), temperature=temperature)
        return {"images": self.render(x), "grid": self.grid(x, nrow=int(math.ceil(math.sqrt(n))))}

    @torch.no_grad()
    def interpolate(self, a: int, b: int, steps: int = 10, spherical: bool = False,
                    label: int | str | None = None) -> dict[str, Any]:
        """The decoded path between the codes of samples ``a`` and ``b``; a conditional model follows
        :func:`aekit.latent.interpolation_labels` (the rule of ``aekit interpolate --label``): each sample encoded
        with its own label, the path decoded with ``label``, default the label of ``a``."""
        self.require_latent()
        xa = to_float(self._rows()[self._check_index(a)])
        xb = to_float(self._rows()[self._check_index(b)])
        c = self._class(label)
        labels: tuple[int, int] | None = None
        path: int | None = None
        if self.conditional:
            own = None if self.y is None else (int(self.y[a]), int(self.y[b]))
            if own is None and c is None:
                raise RequestError("the served split has no labels: send label (a class id or name)", 422)
            labels, path = interpolation_labels(own, c)
        with self.lock:
            z, x = interpolation_path(self.model, xa, xb, steps, spherical, labels=labels, path_label=path)
        return {"codes": z.cpu().tolist(), "images": self.render(x), "strip": self.grid(x, nrow=steps)}

    # ---- uploads

    def read_upload(self, data: bytes, content_type: str | None) -> Image.Image:
        """Validate an uploaded image (type, size, integrity) and open it; RequestError otherwise."""
        if content_type not in UPLOAD_TYPES:
            raise RequestError(f"unsupported upload type {content_type!r}: upload a PNG or JPEG image", 415)
        if len(data) > self.max_upload_bytes:
            raise RequestError(f"upload is {len(data):,} bytes, over the limit of {self.max_upload_bytes:,}: "
                               "upload a smaller image", 413)
        if not data.startswith(UPLOAD_TYPES[content_type]):
            raise RequestError(f"the upload is not a valid {content_type.split('/')[1].upper()} file: "
                               "upload a PNG or JPEG image", 415)
        try:
            img = Image.open(io.BytesIO(data))
            if img.width * img.height > MAX_UPLOAD_PIXELS:
                raise RequestError(f"image is {img.width}×{img.height} pixels, over the limit of "
                                   f"{MAX_UPLOAD_PIXELS:,}: upload a smaller image", 413)
            img.load()
        except RequestError:
            raise
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
            raise RequestError(f"the image could not be decoded ({type(e).__name__}): upload an intact PNG or "
                               "JPEG file") from None
        return img

    def image_tensor(self, img: Image.Image, resize: bool = True) -> torch.Tensor:
        """An uploaded image as model input (1, C, H, W) in [0, 1]: the model's channels, and (``resize``) its
        size."""
        shape = self._input_shape()
        channels = shape[0] if shape and len(shape) == 3 else 3
        img = img.convert("L" if channels == 1 else "RGB")
        if resize and shape and len(shape) == 3:
            img = img.resize((shape[2], shape[1]), Image.Resampling.BILINEAR)
        a = np.asarray(img, dtype=np.float32) / 255.0
        a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
        if channels not in (1, 3):
            a = np.repeat(a[:1], channels, axis=0)
        return torch.from_numpy(np.ascontiguousarray(a))[None]

    @torch.no_grad()
    def encode_image(self, data: bytes, content_type: str | None, label: int | str | None = None) -> dict[str, Any]:
        img = self.read_upload(data, content_type)
        self.require_latent()
        if self.kind != "image":
            raise RequestError("this run models table rows, not images: post rows to /api/encode instead")
        kw = self.model.label_kwargs(self._class(label, "encoding an upload"))
        x = self.image_tensor(img).to(self.device)
        with self.lock:
            z = self.model.embed(x, **kw)
            recon = self.model.decode(z, **kw)
        return {"code": z[0].tolist(), "input": self.render(x)[0], "reconstruction": self.render(recon)[0]}

    @torch.no_grad()
    def segment(self, data: bytes, content_type: str | None) -> dict[str, Any]:
        if not self.can_segment:
            raise RequestError(f"model '{self.model_name}' does not segment images: serve a segmentation run "
                               "(a supervised model, e.g. a U-Net)")
        img = self.read_upload(data, content_type)
        x = self.image_tensor(img, resize=False).to(self.device)  # at its own size, as `aekit segment` does
        shape = self._input_shape() or ()
        tiled = any(s > t for s, t in zip(x.shape[-2:], shape[1:]))
        with self.lock:  # larger than the training images: overlap-tile inference (aekit.infer), else whole
            raw = predict_tiled(self.model, x) if tiled else self.model.predict(x)
        mask = to_class_map(raw, x.shape[-2:])
        base = image_to_uint8(x[0])
        rgb = np.repeat(base[:, :, None], 3, axis=2) if base.ndim == 2 else base
        color = np.zeros_like(rgb)
        fg = mask > 0
        color[fg] = PALETTE[(mask[fg] - 1) % len(PALETTE)]
        overlay = np.where(fg[:, :, None], (0.45 * color + 0.55 * rgb).round(), rgb).astype(np.uint8)
        mask_rgba = np.concatenate([color, (fg * 255).astype(np.uint8)[:, :, None]], axis=2)
        ids, counts = np.unique(mask, return_counts=True)
        return {"width": int(mask.shape[1]), "height": int(mask.shape[0]), "tiled": tiled, "input": png_data_url(rgb),
                "mask": png_data_url(mask_rgba), "overlay": png_data_url(overlay),
                "class_fractions": {str(int(i)): float(c) / mask.size for i, c in zip(ids, counts)}}


def matrix(rows: Sequence[Sequence[float]], width: int, what: str, expected: str) -> torch.Tensor:
    """Rows of numbers → a float32 (N, width) tensor; ragged rows, a wrong width or values beyond float32's
    range are a 422 RequestError (never a 500)."""
    rows = [list(r) for r in rows]
    for i, r in enumerate(rows):
        if len(r) != width:
            raise RequestError(f"each {what} must be {expected}: {what} {i} has {len(r)}", 422)
    x = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), width)
    if not bool(torch.isfinite(x).all()):
        raise RequestError(f"{what}s hold values beyond the float32 range (|x| > 3.4e38): send {expected}", 422)
    return x


def _device(model: torch.nn.Module) -> torch.device:
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def to_class_map(raw: Any, hw: Sequence[int]) -> np.ndarray:
    """A segmentation output for one image → (H, W) int64 class ids (see the module docstring)."""
    if isinstance(raw, (tuple, list)):
        raw = raw[0]
    if not torch.is_tensor(raw):
        raise RequestError("the model's segmentation output is not a tensor: it cannot be drawn", 500)
    t = raw.detach().cpu()
    if t.ndim == 4 and t.shape[1] > 1:
        t = t.argmax(1)
    elif t.ndim == 4:
        t = t[:, 0]
    if t.ndim == 3:
        t = t[0]
    if t.ndim != 2:
        raise RequestError(f"the model's segmentation output has shape {tuple(raw.shape)}: expected (N, H, W) or "
                           "(N, K, H, W)", 500)
    if t.is_floating_point():
        t = t > (0.5 if float(t.min()) >= 0 and float(t.max()) <= 1 else 0.0)
    t = t.long()
    if tuple(t.shape) != tuple(hw):
        t = torch.nn.functional.interpolate(t[None, None].float(), size=tuple(hw), mode="nearest")[0, 0].long()
    return t.numpy()
