"""The service's settings (the profile's ``serve`` section), defaults in one place."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from clothes_retrieval.config import FrozenConfig

__all__ = ["ServeConfig", "ServiceLimits", "TOKEN_ENV"]

# The bearer token that lets a client change the gallery; never a default (see ServeConfig).
TOKEN_ENV = "CLOTHES_RETRIEVAL_TOKEN"


class ServiceLimits(FrozenConfig):
    """What one request may ask for; anything beyond is refused with a 4xx naming the limit."""

    max_upload_bytes: int = Field(
        default=20 * 1024 * 1024, ge=1, description="largest upload (bytes); larger: 413"
    )
    # A 12-megapixel phone photo is 12e6; PIL's own decompression-bomb error is at 179e6.
    max_pixels: int = Field(
        default=50_000_000, ge=1, description="largest decoded image (width x height); 413"
    )
    max_top_k: int = Field(default=100, ge=1, description="largest top_k a request may ask")
    max_items: int = Field(default=20, ge=1, description="most garments searched per photo")
    default_top_k: int = Field(default=10, ge=1)
    default_max_items: int = Field(default=5, ge=1)


class ServeConfig(FrozenConfig):
    """How ``clothes-retrieval serve`` runs (HTTP) and what ``search`` may be asked."""

    host: str = Field(default="127.0.0.1", description="listen address (loopback by default)")
    port: int = Field(default=8000, ge=0, le=65535)
    # Writes (POST /gallery, DELETE /gallery/{id}) need this token as `Authorization: Bearer`.
    # Given as a file (never the token itself in a profile) or by the environment
    # variable CLOTHES_RETRIEVAL_TOKEN. With neither, writes are refused unless the server
    # listens on loopback only.
    token_file: Path | None = None
    cors_origins: tuple[str, ...] = Field(default=(), description="none: no CORS headers")
    limits: ServiceLimits = ServiceLimits()
    # Concurrent /search requests are grouped into one forward pass per model: a batch is
    # sent when it holds max_batch photos or after batch_window_ms (0: no batching).
    max_batch: int = Field(default=8, ge=1)
    batch_window_ms: float = Field(default=5.0, ge=0)
    # How often the server looks for a newly published bundle (0: never).
    reload_seconds: float = Field(default=2.0, ge=0)
    # Where gallery additions and deletions are kept (default: <bundle>.gallery beside it).
    gallery_state: Path | None = None
    device: str | None = Field(default=None, description="None: cuda when available, else cpu")
    torch_threads: int | None = Field(default=None, ge=1, description="None: torch's default")
