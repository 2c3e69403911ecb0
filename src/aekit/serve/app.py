"""The FastAPI layer of `aekit serve`: the page at ``/``, a JSON API under ``/api`` and ``/openapi.json``.

Every error is JSON ``{"error": "<one line: the problem and the fix>"}`` with a 4xx status (5xx only for a bug),
and a failing request never stops the server.  Uploads are limited in size (``max_upload_bytes``; larger
requests are refused from their Content-Length before the body is read) and type (PNG or JPEG, checked by
content type *and* leading bytes, then decoded in full).  The server binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import importlib.resources
import ipaddress
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import AekitError
from ..version import __version__
from .explorer import Explorer, RequestError

log = logging.getLogger(__name__)

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
MAX_ROWS = 256

# ----------------------------------------------------------------------------------------------- schemas


class ErrorResponse(BaseModel):
    error: str = Field(description="what is wrong and how to fix it, in one line")


class EncodeRequest(BaseModel):
    """Either ``indices`` of samples of the served split, or ``inputs``: flattened samples (images in [0, 1])."""

    indices: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1, max_length=MAX_ROWS)
    inputs: list[list[FiniteFloat]] | None = Field(None, min_length=1, max_length=MAX_ROWS)

    @model_validator(mode="after")
    def _one_of(self) -> EncodeRequest:
        if (self.indices is None) == (self.inputs is None):
            raise ValueError("give exactly one of 'indices' or 'inputs'")
        return self


class EncodeResponse(BaseModel):
    codes: list[list[float]]
    reconstructions: list[str] = Field(description="PNG data URLs (table rows as bar charts)")


class ImageEncodeResponse(BaseModel):
    code: list[float]
    input: str
    reconstruction: str


class DecodeRequest(BaseModel):
    z: list[list[FiniteFloat]] = Field(min_length=1, max_length=MAX_ROWS, description="codes, latent_dim each")
    values: bool = Field(False, description="also return the decoded values")


class DecodeResponse(BaseModel):
    images: list[str]
    values: list[list[float]] | None = None


class SampleRequest(BaseModel):
    n: int = Field(16, ge=1, le=MAX_ROWS)
    seed: int = Field(0, ge=0, le=2**31 - 1)


class SampleResponse(BaseModel):
    images: list[str]
    grid: str | None


class InterpolateRequest(BaseModel):
    a: int = Field(ge=0, description="index of the start sample in the served split")
    b: int = Field(ge=0, description="index of the end sample")
    steps: int = Field(10, ge=2, le=32)
    spherical: bool = False


class InterpolateResponse(BaseModel):
    codes: list[list[float]]
    images: list[str]
    strip: str | None


class ItemResponse(BaseModel):
    index: int
    label: int | None
    class_name: str | None
    code: list[float]
    input: str
    reconstruction: str


class PointsResponse(BaseModel):
    index: list[int]
    x: list[float]
    y: list[float]
    label: list[int] | None
    axis_labels: list[str]
    classes: list[str] | None


class SegmentResponse(BaseModel):
    width: int
    height: int
    input: str
    mask: str = Field(description="RGBA PNG: class colours, background transparent")
    overlay: str
    class_fractions: dict[str, float]


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422)}

# ----------------------------------------------------------------------------------------------- app


def _index_html() -> str:
    return importlib.resources.files("aekit.serve").joinpath("static/index.html").read_text(encoding="utf-8")


def create_app(explorer: Explorer) -> FastAPI:
    """The web app around ``explorer`` (see :class:`Explorer` for the operations)."""
    app = FastAPI(title="aekit explorer", version=__version__,
                  description=f"Explore the {explorer.model_name} model: latent map, decoding, sampling, "
                              "interpolation and segmentation.  Images are PNG data URLs; errors are "
                              '{"error": "..."}.')
    app.state.explorer = explorer
    page = _index_html()
    limit = explorer.max_upload_bytes + 64 * 1024  # the file plus multipart overhead

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        if request.method == "POST" and length is not None:
            if not length.isdigit():
                return JSONResponse({"error": "invalid Content-Length header"}, status_code=400)
            if int(length) > limit:
                return JSONResponse({"error": f"request body is {int(length):,} bytes, over the upload limit of "
                                              f"{explorer.max_upload_bytes:,}: upload a smaller image"},
                                    status_code=413)
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Content-Security-Policy",
                                    "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                    "script-src 'self' 'unsafe-inline'; connect-src 'self'")
        return response

    @app.exception_handler(AekitError)
    async def _aekit_error(request: Request, exc: AekitError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = f"invalid request: {where + ': ' if where else ''}{first.get('msg', 'bad input')}"
        return JSONResponse({"error": msg + " (see /docs for the request schema)"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return JSONResponse({"error": detail}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error while serving %s", request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}): see the server log"}, status_code=500)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/api/info", summary="what the served run can do (model, shapes, sliders, classes)")
    def info() -> dict[str, Any]:
        return explorer.info()

    @app.get("/api/points", response_model=PointsResponse, summary="the 2-D map of the split's codes")
    def points() -> dict[str, Any]:
        return explorer.points()

    @app.get("/api/item/{index}", response_model=ItemResponse, responses=ERRORS,
             summary="one sample: its input, code and reconstruction")
    def item(index: int) -> dict[str, Any]:
        return explorer.item(index)

    @app.post("/api/encode", response_model=EncodeResponse, responses=ERRORS, summary="codes of samples")
    def encode(req: EncodeRequest) -> dict[str, Any]:
        return explorer.encode(req.indices, req.inputs)

    @app.post("/api/encode/image", response_model=ImageEncodeResponse, responses=ERRORS,
              summary="code and reconstruction of an uploaded PNG/JPEG image")
    async def encode_image(file: UploadFile = File(...)) -> dict[str, Any]:
        return explorer.encode_image(await _read(file, explorer), file.content_type)

    @app.post("/api/decode", response_model=DecodeResponse, responses=ERRORS, summary="decode codes")
    def decode(req: DecodeRequest) -> dict[str, Any]:
        return explorer.decode(req.z, req.values)

    @app.post("/api/sample", response_model=SampleResponse, responses=ERRORS, summary="draws from the prior (VAE)")
    def sample(req: SampleRequest) -> dict[str, Any]:
        return explorer.sample(req.n, req.seed)

    @app.post("/api/interpolate", response_model=InterpolateResponse, responses=ERRORS,
              summary="decoded path between the codes of two samples")
    def interpolate(req: InterpolateRequest) -> dict[str, Any]:
        return explorer.interpolate(req.a, req.b, req.steps, req.spherical)

    @app.post("/api/segment", response_model=SegmentResponse, responses=ERRORS,
              summary="predicted mask of an uploaded PNG/JPEG image, overlaid (segmentation runs)")
    async def segment(file: UploadFile = File(...)) -> dict[str, Any]:
        return explorer.segment(await _read(file, explorer), file.content_type)

    return app


async def _read(file: UploadFile, explorer: Explorer) -> bytes:
    """At most ``max_upload_bytes + 1`` bytes of an upload (enough to tell that it is too large)."""
    data = await file.read(explorer.max_upload_bytes + 1)
    if len(data) > explorer.max_upload_bytes:
        raise RequestError(f"upload is over the limit of {explorer.max_upload_bytes:,} bytes: upload a smaller "
                           "image", 413)
    return data


def explorer_for_run(run_dir: str | Path, *, split: str = "test", max_points: int = 5000,
                     max_upload_bytes: int = 4 << 20) -> Explorer:
    """Load a run and its data split (a run whose data cannot be loaded is served without the map)."""
    from ..train import load_run

    run = load_run(run_dir)
    data = None
    try:
        data = run.dataset()
    except AekitError as e:
        log.warning("the run's data could not be loaded (%s): serving without the latent map", e)
    return Explorer(run.model, data, split=split, model_name=run.model_name, max_points=max_points,
                    max_upload_bytes=max_upload_bytes)


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8000, **kwargs: Any) -> None:
    import uvicorn

    explorer = explorer_for_run(run_dir, **kwargs)
    if not _is_loopback(host):
        log.warning("serving on %s: other machines can reach this explorer (it has no authentication)", host)
    log.info("aekit explorer for %s: http://%s:%d/  (API docs at /docs, Ctrl+C stops)", run_dir,
             f"[{host}]" if ":" in host else host, port)
    uvicorn.run(create_app(explorer), host=host, port=port, log_level="warning")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
