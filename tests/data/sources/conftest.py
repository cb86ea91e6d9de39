"""Helpers for the source-adapter tests: tiny photos written with PIL."""

from __future__ import annotations

import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PhotoWriter = Callable[..., Path]


@pytest.fixture
def photo() -> PhotoWriter:
    """``photo(path, width=32, height=48)``: write a small JPEG (parents made), return path.

    ``corrupt=True`` writes bytes that are not an image instead."""

    def write(path: Path, width: int = 32, height: int = 48, *, corrupt: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if corrupt:
            path.write_bytes(b"not a jpeg")
            return path
        rng = np.random.default_rng(zlib.crc32(path.name.encode()))
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(path, format="JPEG")
        return path

    return write
