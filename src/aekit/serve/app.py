"""The FastAPI layer of `aekit serve`: the page at ``/``, a JSON API under ``/api`` and ``/openapi.json``.

Every error is JSON ``{"error": "<one line: the problem and the fix>"}`` with a 4xx status (5xx only for a bug),
and a failing request never stops the server.  The server binds to 127.0.0.1 unless told otherwise, and the
pure-ASGI :class:`Guard` in front of every route

- accepts only requests whose ``Host`` header names this machine's loopback (``localhost``, ``127.0.0.1``,
  ``[::1]``) or the ``--host`` value (400 otherwise: a DNS-rebinding page cannot drive the explorer);
- bounds every request body (``max_upload_bytes`` plus the multipart overhead): refused from its
  Content-Length, and counted while it arrives, so a chunked body is stopped at the limit (413), not read whole;
- adds ``nosniff`` and a same-origin Content-Security-Policy to every response (no CORS headers: cross-origin
  pages cannot read the API).

Uploads are checked for type (PNG or JPEG, content type *and* leading bytes, then decoded in full).  Inference
runs off the event loop (plain ``def`` handlers run in the threadpool) behind a bounded count of requests in
progress (503 when full), so ``/api/info`` stays fast while uploads are processed.  Results that are not
finite are refused (422).  There is no ``/docs`` page (Swagger UI would load from a CDN); ``/openapi.json``
describes the API.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import ipaddress
import json
import logging
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
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
MAX_BUSY = 8  # inference requests in progress at once; more get 503
MAX_TEMPERATURE = 10.0  # sampling temperature bound of /api/sample (1: the prior)
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; "
                                 b"script-src 'self' 'unsafe-inline'; connect-src 'self'"),
]

# ----------------------------------------------------------------------------------------------- schemas


class ErrorResponse(BaseModel):
    error: str = Field(description="what is wrong and how to fix it, in one line")


# how a request's ``label`` is read (models.base.Autoencoder.label_index)
LABEL_RULE = ("a JSON number is a class id; a string is a class name, or id:N, always id N; a bare integer string "
              "naming no class is an id, an error when the class names are other numbers")
# the two routes that take ``label`` in the query string (?label=Sandal): always a string, read as --label is
QUERY_RULE = ("a class name (in any letter case when only one class matches so), or id:N, always id N; a bare "
              "integer naming no class is an id, an error when the class names are other numbers")
ITEM_LABEL = ("conditional runs: the class to encode a sample of an unlabelled split with (required there); a "
              "sample with its own label is encoded with that, and a label given is still checked: " + QUERY_RULE)
UPLOAD_LABEL = "conditional runs: the class to encode the upload with (required): " + QUERY_RULE


class EncodeRequest(BaseModel):
    """Either ``indices`` of samples of the served split, or ``inputs``: flattened samples (images in [0, 1])."""

    indices: list[Annotated[int, Field(ge=0)]] | None = Field(None, min_length=1, max_length=MAX_ROWS)
    inputs: list[list[FiniteFloat]] | None = Field(None, min_length=1, max_length=MAX_ROWS)
    label: int | str | None = Field(None, description="conditional models: the class to encode with ("
                                                      + LABEL_RULE + "); default: each sample's own label (indices)")

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
    label: int | str | None = Field(None, description="conditional models: the class to decode with (" + LABEL_RULE + ")")


class DecodeResponse(BaseModel):
    images: list[str]
    values: list[list[float]] | None = None


class SampleRequest(BaseModel):
    n: int = Field(16, ge=1, le=MAX_ROWS)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    label: int | str | None = Field(None, description="conditional models: the class of every draw (" + LABEL_RULE + "); "
                                                      "default: the classes in turn")
    temperature: float = Field(1.0, ge=0, le=MAX_TEMPERATURE, allow_inf_nan=False, strict=True,
                               description="scale of the draws (a JSON number): 1 samples the prior; below 1 nearer "
                                           "its mode (more typical, less varied); 0 is a Gaussian prior's mode")


class SampleResponse(BaseModel):
    images: list[str]
    grid: str | None


class InterpolateRequest(BaseModel):
    a: int = Field(ge=0, description="index of the start sample in the served split")
    b: int = Field(ge=0, description="index of the end sample")
    steps: int = Field(10, ge=2, le=32)
    spherical: bool = False
    label: int | str | None = Field(None, description="conditional models: the class the path is decoded with ("
                                                      + LABEL_RULE + "); each sample "
                                                      "is encoded with its own label; default: the label of sample a "
                                                      "(the rule of aekit interpolate --label)")


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
    width: int = Field(description="the uploaded image's own width: masks are not resized")
    height: int
    tiled: bool = Field(description="segmented tile by tile (overlap-tile, as `aekit segment`): the image is larger "
                                    "than the training images")
    input: str
    mask: str = Field(description="RGBA PNG: class colours, background transparent")
    overlay: str
    class_fractions: dict[str, float]


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": ErrorResponse} for code in (400, 404, 413, 415, 422)}

# ----------------------------------------------------------------------------------------------- app


def _index_html() -> str:
    return importlib.resources.files("aekit.serve").joinpath("static/index.html").read_text(encoding="utf-8")


class BodyTooLarge(HTTPException):
    """Raised from inside ``receive`` when a body passes the limit; FastAPI lets HTTPExceptions through."""


class Guard:
    """Pure-ASGI middleware: the Host check, the body limit (counted as the body arrives) and the security
    headers, for every route (see the module docstring)."""

    def __init__(self, app: Any, *, limit: int, upload_limit: int, hosts: frozenset[str], any_ip: bool):
        self.app, self.limit, self.upload_limit, self.hosts, self.any_ip = app, limit, upload_limit, hosts, any_ip

    def host_ok(self, value: str | None) -> bool:
        if not value:
            return False
        host = value.strip().lower()
        if host.startswith("["):  # [::1]:8000
            host = host[1:].split("]", 1)[0]
        elif host.count(":") == 1:  # 127.0.0.1:8000
            host = host.split(":", 1)[0]
        if host in self.hosts or host == "localhost" or host.endswith(".localhost"):
            return True
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            return False  # a name that is not ours: DNS rebinding
        return ip.is_loopback or self.any_ip  # an address literal cannot be rebound

    async def _reply(self, send: Any, status: int, message: str) -> None:
        body = json.dumps({"error": message}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"connection", b"close"), *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})

    def too_large(self, size: str) -> str:
        return (f"request body is {size} bytes, over the limit of {self.upload_limit:,} bytes (+ form overhead): "
                "send a smaller image or fewer rows")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if not self.host_ok(headers.get("host")):
            await self._reply(send, 400, f"Host header {headers.get('host')!r} is not this explorer's address: open "
                                         "it as http://127.0.0.1:PORT/ (or the --host given to aekit serve)")
            return
        length = headers.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                await self._reply(send, 400, "invalid Content-Length header: send the body's size in bytes")
                return
            if int(length) > self.limit:
                await self._reply(send, 413, self.too_large(f"{int(length):,}"))
                return
        received = 0
        started = False

        async def bounded_receive() -> Any:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(413, self.too_large(f"over {self.limit:,}"))
            return message

        async def secured_send(message: Any) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                present = {k.lower() for k, _ in message.get("headers", [])}
                message = {**message, "headers": [*message.get("headers", []),
                                                  *((k, v) for k, v in SECURITY_HEADERS if k not in present)]}
            await send(message)

        try:
            await self.app(scope, bounded_receive, secured_send)
        except BodyTooLarge as e:  # raised outside a route's handlers (the route's own handler answers 413)
            if not started:
                await self._reply(send, 413, str(e.detail))


def create_app(explorer: Explorer, *, host: str = "127.0.0.1", allowed_hosts: tuple[str, ...] = (),
               max_busy: int = MAX_BUSY) -> FastAPI:
    """The web app around ``explorer`` (see :class:`Explorer` for the operations), for a server bound to
    ``host``: requests must name a loopback address, ``host`` or one of ``allowed_hosts`` in their Host header
    (any IP address too when ``host`` is a wildcard such as 0.0.0.0)."""
    app = FastAPI(title="aekit explorer", version=__version__, docs_url=None, redoc_url=None,
                  description=f"Explore the {explorer.model_name} model: latent map, decoding, sampling, "
                              "interpolation and segmentation.  Images are PNG data URLs; errors are "
                              '{"error": "..."}.')
    app.state.explorer = explorer
    page = _index_html()
    limit = explorer.max_upload_bytes + 64 * 1024  # the file plus multipart overhead
    hosts = frozenset(h.strip("[]").lower() for h in (host, *allowed_hosts))
    app.add_middleware(Guard, limit=limit, upload_limit=explorer.max_upload_bytes, hosts=hosts,
                       any_ip=_is_wildcard(host))
    slots = threading.BoundedSemaphore(max_busy)

    @contextlib.contextmanager
    def busy() -> Iterator[None]:
        """A slot for one inference request (off the event loop already); 503 when all are taken."""
        if not slots.acquire(blocking=False):
            raise RequestError(f"the explorer is busy ({max_busy} requests in progress): retry in a moment", 503)
        try:
            yield
        finally:
            slots.release()

    def infer(fn: Any, *args: Any) -> dict[str, Any]:
        with busy():
            return _finite(fn(*args))

    @app.exception_handler(AekitError)
    async def _aekit_error(request: Request, exc: AekitError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=getattr(exc, "status", 400))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        errs = exc.errors()
        first = errs[0] if errs else {}
        where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
        msg = f"invalid request: {where + ': ' if where else ''}{first.get('msg', 'bad input')}"
        return JSONResponse({"error": msg + " (see /openapi.json for the request schema)"}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else "request failed"
        return JSONResponse({"error": detail}, status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error while serving %s", request.url.path)
        return JSONResponse({"error": f"internal error ({type(exc).__name__}): see the server log"}, status_code=500)

    # cheap answers stay on the event loop (no threadpool slot to wait for); inference runs in the threadpool

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get("/api/info", summary="what the served run can do (model, shapes, sliders, classes)")
    async def info() -> dict[str, Any]:
        return explorer.info()

    @app.get("/api/points", response_model=PointsResponse, summary="the 2-D map of the split's codes")
    async def points() -> dict[str, Any]:
        return explorer.points()

    @app.get("/api/item/{index}", response_model=ItemResponse, responses=ERRORS,
             summary="one sample: its input, code and reconstruction")
    def item(index: int, label: Annotated[str | None, Query(description=ITEM_LABEL)] = None) -> dict[str, Any]:
        return infer(explorer.item, index, label)

    @app.post("/api/encode", response_model=EncodeResponse, responses=ERRORS, summary="codes of samples")
    def encode(req: EncodeRequest) -> dict[str, Any]:
        return infer(explorer.encode, req.indices, req.inputs, req.label)

    @app.post("/api/encode/image", response_model=ImageEncodeResponse, responses=ERRORS,
              summary="code and reconstruction of an uploaded PNG/JPEG image")
    def encode_image(file: UploadFile = File(...),
                     label: Annotated[str | None, Query(description=UPLOAD_LABEL)] = None) -> dict[str, Any]:
        return infer(explorer.encode_image, _read(file, explorer), file.content_type, label)

    @app.post("/api/decode", response_model=DecodeResponse, responses=ERRORS, summary="decode codes")
    def decode(req: DecodeRequest) -> dict[str, Any]:
        return infer(explorer.decode, req.z, req.values, req.label)

    @app.post("/api/sample", response_model=SampleResponse, responses=ERRORS, summary="draws from the prior (VAE)")
    def sample(req: SampleRequest) -> dict[str, Any]:
        return infer(explorer.sample, req.n, req.seed, req.label, req.temperature)

    @app.post("/api/interpolate", response_model=InterpolateResponse, responses=ERRORS,
              summary="decoded path between the codes of two samples")
    def interpolate(req: InterpolateRequest) -> dict[str, Any]:
        return infer(explorer.interpolate, req.a, req.b, req.steps, req.spherical, req.label)

    @app.post("/api/segment", response_model=SegmentResponse, responses=ERRORS,
              summary="predicted mask of an uploaded PNG/JPEG image at its own size (tiled when larger than "
                      "the training images), overlaid (segmentation runs)")
    def segment(file: UploadFile = File(...)) -> dict[str, Any]:
        return infer(explorer.segment, _read(file, explorer), file.content_type)

    return app


def _read(file: UploadFile, explorer: Explorer) -> bytes:
    """At most ``max_upload_bytes + 1`` bytes of an upload (enough to tell that it is too large); called from a
    threadpool handler (the parsed upload is a spooled file)."""
    data = file.file.read(explorer.max_upload_bytes + 1)
    if len(data) > explorer.max_upload_bytes:
        raise RequestError(f"upload is over the limit of {explorer.max_upload_bytes:,} bytes: upload a smaller "
                           "image", 413)
    return data


def _finite(result: dict[str, Any]) -> dict[str, Any]:
    """Refuse a result holding NaN or ±inf (it would be invalid JSON, or ``null`` codes)."""
    def bad(v: Any) -> bool:
        if isinstance(v, float):
            return not math.isfinite(v)
        if isinstance(v, (list, tuple)):
            return any(bad(x) for x in v)
        if isinstance(v, dict):
            return any(bad(x) for x in v.values())
        return False

    for key, value in result.items():
        if bad(value):
            raise RequestError(f"the model's {key} for these inputs are not finite numbers (NaN or inf): send "
                               "inputs in the model's range (images in [0, 1], codes near the latent map)", 422)
    return result


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
    log.info("aekit explorer for %s: http://%s:%d/  (API description at /openapi.json, Ctrl+C stops)", run_dir,
             f"[{host}]" if ":" in host else host, port)
    uvicorn.run(create_app(explorer, host=host), host=host, port=port, log_level="warning")


def check_port(host: str, port: int) -> None:
    """Refuse, in one line, a port that is taken (or an address that cannot be bound) before anything starts."""
    import socket

    if port == 0:
        return
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise AekitError(f"--host {host}: not an address of this machine ({e.strerror}): use 127.0.0.1") from None
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            s.bind(addr)
        except OSError as e:
            import errno

            if e.errno == errno.EADDRINUSE:
                raise AekitError(f"port {port} on {host} is already in use: choose another --port (0 picks a free "
                                 "one) or stop the program using it") from None
            raise AekitError(f"cannot listen on {host}:{port} ({e.strerror or e}): choose another --host or "
                             "--port") from None


def _is_wildcard(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_unspecified
    except ValueError:
        return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
