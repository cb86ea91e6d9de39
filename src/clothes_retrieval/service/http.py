"""The HTTP API and the web page (FastAPI + uvicorn) on a :class:`ServiceHolder`.

Reads are open; gallery writes need ``Authorization: Bearer <token>`` when the server has
a token, and are refused (403) without one unless it listens on loopback only. Every
refusal is a JSON body ``{"error": {"code": ..., "message": ...}}`` with a 4xx status;
a request never gets a 500 for what it sent.
"""

import asyncio
import contextlib
import hmac
import ipaddress
import logging
import os
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from clothes_retrieval.service.batching import Batcher
from clothes_retrieval.service.config import TOKEN_ENV, ServeConfig
from clothes_retrieval.service.engine import (
    InputError,
    SearchAnswer,
    ServiceHolder,
    UnknownItemError,
    decode_image,
)

__all__ = ["create_app", "is_loopback", "read_token", "serve"]

log = logging.getLogger(__name__)

GALLERY_ID = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
STATIC = resources.files("clothes_retrieval.service") / "static"


class ResultOut(BaseModel):
    gallery_id: str
    image_id: str
    box: list[float]
    category: str
    similarity: float
    image_url: str


class ItemOut(BaseModel):
    box: list[float]
    category: str
    score: float
    results: list[ResultOut]


class SearchOut(BaseModel):
    items: list[ItemOut]
    reason: str | None = None
    bundle: dict[str, Any]
    timings: dict[str, float] = {}


class ErrorBody(BaseModel):
    code: str
    message: str


class ErrorOut(BaseModel):
    error: ErrorBody


class AddedOut(BaseModel):
    added: list[str]
    reason: str | None = None
    gallery_items: int


class DeletedOut(BaseModel):
    deleted: str
    gallery_items: int


ERRORS = {s: {"model": ErrorOut} for s in (400, 401, 403, 404, 413, 415, 422)}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(config: ServeConfig) -> str | None:
    """The write token: ``CLOTHES_RETRIEVAL_TOKEN``, else ``serve.token_file``; never a
    default. An empty token is refused (it would let anyone write)."""
    token = os.environ.get(TOKEN_ENV)
    if token is None and config.token_file is not None:
        path = Path(config.token_file)
        if not path.is_file():
            raise FileNotFoundError(
                f"serve.token_file {path} does not exist: create it or unset it"
            )
        token = path.read_text().strip()
    if token is not None and not token.strip():
        raise ValueError(f"the write token is empty: set {TOKEN_ENV} to a secret, or unset it")
    return token.strip() if token is not None else None


def _wrong_content_type(ctype: str) -> InputError:
    return InputError(
        415,
        "wrong_content_type",
        f"send the photo as multipart/form-data with the field 'image' "
        f"(got content type {ctype or 'none'!r})",
    )


def _error(status: int, code: str, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


class _BodyLimit:
    """Refuse a request body over ``limit`` bytes (413), before it is parsed or stored."""

    def __init__(self, app, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        too_large = _error(
            413,
            "upload_too_large",
            f"the request body is over the limit of {self.limit} bytes: send a smaller photo",
        )
        try:
            if length is not None and int(length) > self.limit:
                return await too_large(scope, receive, send)
        except ValueError:
            return await _error(400, "bad_request", "Content-Length is not a number")(
                scope, receive, send
            )
        seen, exceeded, replaced = 0, False, False

        async def limited():
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    exceeded = True
                    raise _TooLarge
            return message

        async def guarded_send(message):
            # Whatever the app answers to a body cut off at the limit (a parse error), the
            # client gets the 413 that says why.
            nonlocal replaced
            if not exceeded:
                return await send(message)
            if not replaced:
                replaced = True
                await too_large(scope, receive, send)

        try:
            await self.app(scope, limited, guarded_send)
        except _TooLarge:
            if not replaced:
                await too_large(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(holder: ServiceHolder, config: ServeConfig, token: str | None) -> FastAPI:
    """The app on ``holder``'s bundle. ``token``: the write token (None: no token; writes
    then allowed only when ``config.host`` is loopback)."""
    limits = config.limits

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        yield
        batcher.close()
        holder.stop()

    app = FastAPI(
        lifespan=lifespan,
        title="clothes-retrieval",
        summary="Find the shop items of the garments in a street photo.",
        version="1",
    )

    def run_batch(key, images):
        top_k, detect, max_items = key
        return holder.service.search_many(images, top_k=top_k, detect=detect, max_items=max_items)

    batcher = Batcher(run_batch, max_batch=config.max_batch, window_s=config.batch_window_ms / 1e3)
    app.state.batcher, app.state.holder = batcher, holder

    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware, allow_origins=list(config.cors_origins), allow_methods=["GET", "POST"]
        )
    app.add_middleware(_BodyLimit, limit=limits.max_upload_bytes + 64 * 1024)

    @app.exception_handler(InputError)
    async def _input(request: Request, e: InputError):
        return _error(e.status, e.code, e.message)

    @app.exception_handler(UnknownItemError)
    async def _unknown(request: Request, e: UnknownItemError):
        return _error(404, "unknown_gallery_id", e.message)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, e: RequestValidationError):
        ctype = request.headers.get("content-type", "")
        uploads = request.url.path in ("/search", "/gallery")  # the multipart endpoints
        if uploads and request.method == "POST" and not ctype.startswith("multipart/form-data"):
            e = _wrong_content_type(ctype)
            return _error(e.status, e.code, e.message)
        parts = []
        for err in e.errors():
            where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
            parts.append(f"{where}: {err.get('msg')}")
        return _error(422, "invalid_request", "; ".join(parts) or "invalid request")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, e: StarletteHTTPException):
        code = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}.get(
            e.status_code, "http_error"
        )
        return _error(e.status_code, code, str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):  # the server's fault, never the input's
        log.exception("internal error on %s %s", request.method, request.url.path)
        return _error(500, "internal_error", f"the server failed ({type(e).__name__}); see its log")

    def bundle_info() -> dict[str, Any]:
        info = holder.service.info()
        return {
            k: info[k]
            for k in (
                "bundle_id",
                "profile",
                "data_version",
                "models",
                "detectors",
                "gallery_items",
            )
        }

    def answer_out(answer: SearchAnswer) -> dict[str, Any]:
        return {
            "items": [
                {
                    "box": it.box,
                    "category": it.category,
                    "score": it.score,
                    "results": [
                        {**r.__dict__, "image_url": f"/gallery/{r.gallery_id}/image"}
                        for r in it.results
                    ],
                }
                for it in answer.items
            ],
            "reason": answer.reason,
            "bundle": bundle_info(),
            "timings": {k: float(v) for k, v in answer.timings.items()},
        }

    def check_multipart(request: Request) -> None:
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise _wrong_content_type(ctype)

    async def read_upload(image: UploadFile) -> bytes:
        data = await image.read(limits.max_upload_bytes + 1)
        return data

    def authorise(request: Request) -> None:
        if token is None:
            if is_loopback(config.host):
                return
            raise InputError(
                403,
                "writes_disabled",
                f"gallery changes are off: this server has no write token and listens on "
                f"{config.host}; set {TOKEN_ENV} (or serve.token_file) and restart",
            )
        given = request.headers.get("authorization", "")
        if not given.lower().startswith("bearer "):
            raise _Unauthorised
        if not hmac.compare_digest(given[7:].strip().encode(), token.encode()):
            raise InputError(403, "wrong_token", "the bearer token is wrong: nothing was changed")

    @app.exception_handler(_Unauthorised)
    async def _unauth(request: Request, e: _Unauthorised):
        return _error(
            401,
            "missing_token",
            "gallery changes need `Authorization: Bearer <token>`",
            {"WWW-Authenticate": "Bearer"},
        )

    TopK = Annotated[
        int | None, Query(ge=1, le=limits.max_top_k, description="results per garment")
    ]
    MaxItems = Annotated[
        int | None, Query(ge=1, le=limits.max_items, description="garments searched per photo")
    ]
    GalleryId = Annotated[str, PathParam(pattern=GALLERY_ID, max_length=64)]

    @app.get("/health")
    def health() -> dict[str, Any]:
        """200 when a bundle is loaded: its id, data version, models and gallery size."""
        info = holder.service.info()
        return {
            "status": "ok",
            **info,
            "reloads": holder.reloads,
            "reload_error": holder.last_error,
        }

    @app.post("/search", response_model=SearchOut, responses=ERRORS)
    async def search(
        request: Request,
        image: Annotated[UploadFile, File(description="the street photo")],
        top_k: TopK = None,
        detect: Annotated[bool, Query(description="false: the whole photo is one garment")] = True,
        max_items: MaxItems = None,
    ):
        """Find the garments in a photo and each one's most similar shop items."""
        check_multipart(request)
        # Decoded off the event loop: a large photo must not hold up other requests.
        decoded = await asyncio.to_thread(decode_image, await read_upload(image), limits)
        key = (top_k, detect, max_items)
        answer = await asyncio.wrap_future(batcher.submit(key, decoded.image))
        return answer_out(answer)

    @app.post("/search/by-id/{gallery_id}", response_model=SearchOut, responses=ERRORS)
    def search_by_id(gallery_id: GalleryId, top_k: TopK = None):
        """The shop items most like a gallery item (itself left out)."""
        return answer_out(holder.service.search_by_id(gallery_id, top_k))

    @app.get("/gallery/{gallery_id}/image", responses={**ERRORS, 200: {"content": {"image/*": {}}}})
    def gallery_image(gallery_id: GalleryId):
        """The shop photo of a gallery item, by its id."""
        return FileResponse(holder.service.image_path(gallery_id))

    @app.post("/gallery", status_code=201, response_model=AddedOut, responses=ERRORS)
    async def add(
        request: Request,
        image: Annotated[UploadFile, File(description="a shop photo")],
        detect: Annotated[bool, Query(description="false: the whole photo is one item")] = True,
        max_items: MaxItems = None,
    ):
        """Add a shop photo's garments to the gallery (no rebuild). Needs the token."""
        authorise(request)
        check_multipart(request)
        data = await read_upload(image)
        await asyncio.to_thread(decode_image, data, limits)  # refused before the writer
        ids = await asyncio.to_thread(holder.add_photo, data, detect=detect, max_items=max_items)
        reason = None if ids else "no garment detected: add it with detect=false"
        return {"added": ids, "reason": reason, "gallery_items": holder.service.gallery.view.size}

    @app.delete("/gallery/{gallery_id}", response_model=DeletedOut, responses=ERRORS)
    async def delete(request: Request, gallery_id: GalleryId):
        """Delete a gallery item; no search returns it afterwards. Needs the token."""
        authorise(request)
        await asyncio.to_thread(holder.delete, gallery_id)
        return {"deleted": gallery_id, "gallery_items": holder.service.gallery.view.size}

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page():
        return HTMLResponse((STATIC / "index.html").read_text())

    return app


class _Unauthorised(Exception):
    pass


def serve(holder: ServiceHolder, config: ServeConfig, *, log_level: str = "info") -> None:
    """Run the app with uvicorn until interrupted (one process: the models are in memory)."""
    import uvicorn

    token = read_token(config)
    if token is None and not is_loopback(config.host):
        log.warning("no write token: gallery changes are refused (set %s to allow them)", TOKEN_ENV)
    app = create_app(holder, config, token)
    holder.start_watching(config.reload_seconds)
    uvicorn.run(app, host=config.host, port=config.port, log_level=log_level)
