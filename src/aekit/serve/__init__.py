"""`aekit serve RUN`: a local web app to explore a trained run (latent map, sliders, interpolation, sampling,
segmentation of uploaded images) and its JSON API.  Needs the ``serve`` extra (FastAPI + uvicorn)."""

from __future__ import annotations

from typing import Any

__all__ = ["Explorer", "create_app", "serve"]


def __getattr__(name: str) -> Any:  # lazy: `import aekit.serve` must not need FastAPI
    if name == "Explorer":
        from .explorer import Explorer

        return Explorer
    if name in ("create_app", "serve"):
        from . import app

        return getattr(app, name)
    raise AttributeError(name)
