"""Garment silhouettes and fabric looks for the synthetic DeepFashion2-style sample.

Each of the 13 DeepFashion2 categories has a :class:`GarmentShape`: an outline polygon in
a unit box (``u`` right, ``v`` down, both in [0, 1]), the garment's physical size in *body
units* (1.0 = a person's height, head to feet), where it sits on the body, and detail
strokes (neckline, hems, seams, zip) that make the categories recognisable beyond their
outline. Each product has a :class:`ProductLook` (colours and a parametric texture, drawn
once per product) so that every photo of that product shows the same fabric.

:func:`render_garment` draws one garment through a homography ``H`` (unit box -> image
pixels) and returns its colour layer and alpha; the caller composites it. Because the
outline polygon is mapped by the same ``H``, annotations and pixels always agree.
"""

from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from clothes_retrieval.data.schema import CATEGORIES

__all__ = [
    "GARMENTS",
    "GarmentShape",
    "Logo",
    "ProductLook",
    "TEXTURE_KINDS",
    "apply_homography",
    "homography_from_quad",
    "near_duplicate_look",
    "random_look",
    "render_garment",
]

Region = Literal["upper", "lower", "full"]
Point = tuple[float, float]

TEXTURE_KINDS: tuple[str, ...] = ("solid", "stripes", "checks", "dots", "gradient", "noise")


@dataclass(frozen=True)
class GarmentShape:
    """One category's silhouette; coordinates in the unit box of the garment."""

    category_id: int
    name: str
    region: Region
    size: tuple[float, float]  # (width, height) in body units
    top: float  # body-unit y of the garment's top edge when worn (0 = top of the head)
    outline: tuple[Point, ...]  # closed polygon, clockwise in image coordinates
    details: tuple[tuple[Point, ...], ...]  # polylines drawn as darker seams
    logo_anchor: Point  # where a chest / pocket logo sits
    inner: tuple[Point, ...] = ()  # open-front region showing the shirt underneath (outwear)
    front_only: tuple[int, ...] = ()  # indices of ``details`` hidden in a back view

    @property
    def landmarks(self) -> tuple[Point, ...]:
        """Landmark points: the outline vertices (a fixed number per category, as in DF2)."""
        return self.outline


def _mirror(half: list[Point]) -> tuple[Point, ...]:
    """Close a left half outline (top centre -> down the left side -> bottom centre).

    The right half is the mirror image traversed back up, so the polygon is symmetric.
    """
    right = [(round(1.0 - u, 4), v) for u, v in reversed(half[1:-1])]
    return tuple(half + right)


def _sym(line: list[Point]) -> list[tuple[Point, ...]]:
    """A detail polyline and its mirror image."""
    return [tuple(line), tuple((round(1.0 - u, 4), v) for u, v in line)]


def _neck(outline: tuple[Point, ...], n: int) -> tuple[Point, ...]:
    """The neckline: the last ``n`` right-half points, the top centre, the first ``n``."""
    return tuple(outline[-n:]) + tuple(outline[: n + 1])


def _build() -> dict[int, GarmentShape]:
    g: dict[int, GarmentShape] = {}

    # 1 short sleeve top: sleeves angled down ~40 degrees, ending above the elbow.
    o = _mirror(
        [
            (0.5, 0.09),
            (0.43, 0.06),
            (0.37, 0.0),
            (0.2, 0.05),
            (0.0, 0.34),
            (0.1, 0.43),
            (0.21, 0.3),
            (0.21, 1.0),
            (0.5, 1.0),
        ]  # fmt: skip
    )
    g[1] = GarmentShape(
        1, CATEGORIES[1], "upper", (0.40, 0.34), 0.17, o,
        (_neck(o, 2), *_sym([(0.2, 0.05), (0.21, 0.3)]), *_sym([(0.02, 0.31), (0.12, 0.4)]),
         ((0.21, 0.95), (0.79, 0.95))),
        (0.36, 0.3),
    )  # fmt: skip

    # 2 long sleeve top: sleeves hang down to the wrists, near the hem.
    o = _mirror(
        [
            (0.5, 0.08),
            (0.43, 0.05),
            (0.38, 0.0),
            (0.23, 0.04),
            (0.02, 0.88),
            (0.13, 0.92),
            (0.25, 0.32),
            (0.25, 1.0),
            (0.5, 1.0),
        ]  # fmt: skip
    )
    g[2] = GarmentShape(
        2, CATEGORIES[2], "upper", (0.44, 0.38), 0.17, o,
        (_neck(o, 2), *_sym([(0.23, 0.04), (0.25, 0.32)]), *_sym([(0.035, 0.83), (0.14, 0.87)]),
         ((0.25, 0.95), (0.75, 0.95))),
        (0.38, 0.28),
    )  # fmt: skip

    # 3 short sleeve outwear: boxy, longer than a top, notched open front at the hem, a
    # V opening showing the shirt underneath, a zip line and pockets.
    o = _mirror(
        [
            (0.5, 0.04),
            (0.4, 0.0),
            (0.2, 0.05),
            (0.0, 0.36),
            (0.11, 0.45),
            (0.2, 0.32),
            (0.19, 1.0),
            (0.47, 1.0),
            (0.5, 0.95),
        ]  # fmt: skip
    )
    g[3] = GarmentShape(
        3, CATEGORIES[3], "upper", (0.42, 0.38), 0.165, o,
        (((0.5, 0.42), (0.5, 0.95)), ((0.41, 0.02), (0.5, 0.42), (0.59, 0.02)),
         *_sym([(0.26, 0.7), (0.4, 0.7)]), *_sym([(0.2, 0.05), (0.2, 0.32)])),
        (0.33, 0.3),
        inner=((0.41, 0.02), (0.59, 0.02), (0.5, 0.42)),
        front_only=(0, 1),
    )  # fmt: skip

    # 4 long sleeve outwear: as 3 with long sleeves, slightly longer.
    o = _mirror(
        [
            (0.5, 0.04),
            (0.4, 0.0),
            (0.23, 0.04),
            (0.02, 0.86),
            (0.13, 0.9),
            (0.25, 0.3),
            (0.23, 1.0),
            (0.47, 1.0),
            (0.5, 0.95),
        ]  # fmt: skip
    )
    g[4] = GarmentShape(
        4, CATEGORIES[4], "upper", (0.46, 0.42), 0.165, o,
        (((0.5, 0.4), (0.5, 0.95)), ((0.41, 0.02), (0.5, 0.4), (0.59, 0.02)),
         *_sym([(0.29, 0.7), (0.42, 0.7)]), *_sym([(0.23, 0.04), (0.25, 0.3)]),
         *_sym([(0.035, 0.8), (0.145, 0.84)])),
        (0.34, 0.28),
        inner=((0.41, 0.02), (0.59, 0.02), (0.5, 0.4)),
        front_only=(0, 1),
    )  # fmt: skip

    # 5 vest: sleeveless, wide shoulder straps, scooped neck, deep armholes.
    o = _mirror(
        [
            (0.5, 0.2),
            (0.42, 0.13),
            (0.35, 0.0),
            (0.2, 0.0),
            (0.16, 0.14),
            (0.09, 0.26),
            (0.02, 0.32),
            (0.04, 1.0),
            (0.5, 1.0),
        ]  # fmt: skip
    )
    g[5] = GarmentShape(
        5, CATEGORIES[5], "upper", (0.28, 0.32), 0.17, o,
        (_neck(o, 2), ((0.04, 0.95), (0.96, 0.95))),
        (0.34, 0.4),
    )  # fmt: skip

    # 6 sling: a camisole on thin straps (each ~4% of the width).
    o = _mirror(
        [
            (0.5, 0.27),
            (0.31, 0.2),
            (0.31, 0.0),
            (0.265, 0.0),
            (0.265, 0.21),
            (0.05, 0.3),
            (0.05, 1.0),
            (0.5, 1.0),
        ]  # fmt: skip
    )
    g[6] = GarmentShape(
        6, CATEGORIES[6], "upper", (0.27, 0.32), 0.17, o,
        (((0.05, 0.34), (0.5, 0.31), (0.95, 0.34)), ((0.05, 0.95), (0.95, 0.95))),
        (0.4, 0.45),
    )  # fmt: skip

    # 7 shorts: waistband, short legs ending above the knee.
    o = _mirror([(0.5, 0.0), (0.04, 0.0), (0.0, 0.35), (0.0, 0.95), (0.45, 1.0), (0.5, 0.45)])
    g[7] = GarmentShape(
        7, CATEGORIES[7], "lower", (0.30, 0.2), 0.44, o,
        (((0.035, 0.12), (0.965, 0.12)), ((0.5, 0.12), (0.5, 0.4)),
         *_sym([(0.08, 0.2), (0.2, 0.14)])),
        (0.25, 0.3),
    )  # fmt: skip

    # 8 trousers: long legs to the ankle.
    o = _mirror([(0.5, 0.0), (0.05, 0.0), (0.0, 0.2), (0.03, 1.0), (0.44, 1.0), (0.5, 0.22)])
    g[8] = GarmentShape(
        8, CATEGORIES[8], "lower", (0.30, 0.5), 0.44, o,
        (((0.04, 0.05), (0.96, 0.05)), ((0.5, 0.05), (0.5, 0.18)),
         *_sym([(0.26, 0.3), (0.25, 0.97)]), *_sym([(0.07, 0.1), (0.18, 0.06)])),
        (0.25, 0.12),
    )  # fmt: skip

    # 9 skirt: A-line flare from the waist, slightly curved hem.
    o = _mirror([(0.5, 0.0), (0.27, 0.0), (0.22, 0.15), (0.0, 0.92), (0.25, 0.98), (0.5, 1.0)])
    g[9] = GarmentShape(
        9, CATEGORIES[9], "lower", (0.34, 0.26), 0.44, o,
        (((0.26, 0.07), (0.74, 0.07)), ((0.38, 0.1), (0.3, 0.97)), ((0.62, 0.1), (0.7, 0.97)),
         ((0.5, 0.1), (0.5, 0.98))),
        (0.4, 0.25),
    )  # fmt: skip

    # 10 short sleeve dress: T-shirt bodice, waist at ~38%, flared skirt.
    o = _mirror(
        [
            (0.5, 0.05),
            (0.42, 0.035),
            (0.37, 0.0),
            (0.22, 0.03),
            (0.03, 0.19),
            (0.11, 0.25),
            (0.23, 0.17),
            (0.26, 0.38),
            (0.04, 0.97),
            (0.27, 1.0),
            (0.5, 1.0),
        ]  # fmt: skip
    )
    g[10] = GarmentShape(
        10, CATEGORIES[10], "full", (0.42, 0.62), 0.17, o,
        (_neck(o, 2), ((0.26, 0.38), (0.74, 0.38)), *_sym([(0.22, 0.03), (0.23, 0.17)])),
        (0.38, 0.17),
    )  # fmt: skip

    # 11 long sleeve dress.
    o = _mirror(
        [
            (0.5, 0.045),
            (0.43, 0.03),
            (0.38, 0.0),
            (0.24, 0.025),
            (0.02, 0.52),
            (0.12, 0.55),
            (0.26, 0.19),
            (0.28, 0.38),
            (0.06, 0.97),
            (0.28, 1.0),
            (0.5, 1.0),
        ]  # fmt: skip
    )
    g[11] = GarmentShape(
        11, CATEGORIES[11], "full", (0.46, 0.64), 0.17, o,
        (_neck(o, 2), ((0.28, 0.38), (0.72, 0.38)), *_sym([(0.24, 0.025), (0.26, 0.19)]),
         *_sym([(0.035, 0.49), (0.125, 0.52)])),
        (0.38, 0.16),
    )  # fmt: skip

    # 12 vest dress: sleeveless bodice with wide straps, flared skirt.
    o = _mirror(
        [
            (0.5, 0.1),
            (0.4, 0.05),
            (0.34, 0.0),
            (0.2, 0.0),
            (0.16, 0.08),
            (0.12, 0.17),
            (0.17, 0.38),
            (0.0, 0.97),
            (0.25, 1.0),
            (0.5, 1.0),
        ]  # fmt: skip
    )
    g[12] = GarmentShape(
        12, CATEGORIES[12], "full", (0.34, 0.6), 0.17, o,
        (_neck(o, 2), ((0.17, 0.38), (0.83, 0.38))),
        (0.38, 0.2),
    )  # fmt: skip

    # 13 sling dress: thin straps, straight neckline, flared skirt.
    o = _mirror(
        [
            (0.5, 0.16),
            (0.335, 0.12),
            (0.335, 0.0),
            (0.3, 0.0),
            (0.3, 0.125),
            (0.12, 0.17),
            (0.17, 0.38),
            (0.0, 0.97),
            (0.25, 1.0),
            (0.5, 1.0),
        ]  # fmt: skip
    )
    g[13] = GarmentShape(
        13, CATEGORIES[13], "full", (0.34, 0.6), 0.17, o,
        (((0.17, 0.38), (0.83, 0.38)),),
        (0.4, 0.25),
    )  # fmt: skip
    return g


GARMENTS: dict[int, GarmentShape] = _build()


# --------------------------------------------------------------------------- looks


@dataclass(frozen=True)
class Logo:
    """A small patch on the garment: offset from the category's logo anchor, body units."""

    du: float
    dv: float
    size: float  # body units (0.03 ~ a 5 cm patch)
    shape: Literal["square", "circle"]
    color: tuple[float, float, float]


@dataclass(frozen=True)
class ProductLook:
    """A product's fabric: texture kind, its parameters and colours (RGB in [0, 1])."""

    texture: str
    colors: tuple[tuple[float, float, float], ...]  # 3 colours; how many are used depends
    period: float = 0.05  # body units between stripes / checks / dots / noise blobs
    angle: float = 0.0  # radians, stripes / gradient direction
    duty: float = 0.5  # stripe / check line fraction
    dot_radius: float = 0.3  # fraction of the period
    noise: tuple[tuple[float, float, float], ...] = ()  # (fx, fy, phase) per component
    logo: Logo | None = None
    inner_color: tuple[float, float, float] = (0.92, 0.92, 0.9)  # shirt seen under outwear


def _hsv(h: float, s: float, v: float) -> tuple[float, float, float]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r, 4), round(g, 4), round(b, 4))


def _random_color(rng: np.random.Generator) -> tuple[float, float, float]:
    if rng.random() < 0.25:  # neutrals: black, greys, white, beige are common in fashion
        return _hsv(rng.uniform(0.05, 0.15), rng.uniform(0.0, 0.2), rng.uniform(0.1, 0.95))
    return _hsv(rng.random(), rng.uniform(0.35, 0.95), rng.uniform(0.3, 0.95))


def _contrast_color(
    rng: np.random.Generator, c: tuple[float, float, float]
) -> tuple[float, float, float]:
    h, s, v = colorsys.rgb_to_hsv(*c)
    if rng.random() < 0.5:  # complementary hue
        return _hsv(h + rng.uniform(0.3, 0.7), max(s, 0.4), rng.uniform(0.3, 0.95))
    return _hsv(h, s * rng.uniform(0.2, 1.0), 1.0 - v * 0.85 if v > 0.5 else v + 0.5)


def random_look(rng: np.random.Generator) -> ProductLook:
    """A new product's fabric: texture kind, parameters and colours drawn from ``rng``."""
    kind = str(rng.choice(TEXTURE_KINDS, p=[0.28, 0.2, 0.14, 0.14, 0.1, 0.14]))
    c1 = _random_color(rng)
    c2 = _contrast_color(rng, c1)
    c3 = _random_color(rng)
    # Periods of 0.025-0.07 body units are 4-12 px on a 170 px consumer figure.
    period = float(rng.uniform(0.025, 0.07))
    noise = tuple(
        (float(rng.normal(0, 1) / period), float(rng.normal(0, 1) / period),
         float(rng.uniform(0, 2 * np.pi)))
        for _ in range(4)
    )  # fmt: skip
    logo = None
    if rng.random() < 0.25:
        logo = Logo(
            float(rng.uniform(-0.01, 0.01)), float(rng.uniform(-0.01, 0.01)),
            float(rng.uniform(0.025, 0.04)), str(rng.choice(["square", "circle"])),
            _contrast_color(rng, c1),
        )  # fmt: skip
    inner = _hsv(0.1, 0.05, float(rng.choice([0.95, 0.15, 0.6])))
    return ProductLook(
        texture=kind, colors=(c1, c2, c3), period=period,
        angle=float(rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4, rng.uniform(0, np.pi)])),
        duty=float(rng.uniform(0.25, 0.55)), dot_radius=float(rng.uniform(0.15, 0.32)),
        noise=noise, logo=logo, inner_color=inner,
    )  # fmt: skip


def near_duplicate_look(look: ProductLook, rng: np.random.Generator) -> tuple[ProductLook, str]:
    """A copy of ``look`` that differs in one subtle thing; returns it and what changed."""
    changes = ["hue", "logo"]
    if look.texture in ("stripes", "checks", "dots", "noise"):
        changes.append("period")
    if look.texture == "dots":
        changes.append("dot_size")
    change = str(rng.choice(changes))
    if change == "hue":
        shift = float(rng.choice([-1, 1]) * rng.uniform(0.035, 0.06))
        cols = []
        for c in look.colors:
            h, s, v = colorsys.rgb_to_hsv(*c)
            # Near-grey colours barely change with hue: nudge their value instead.
            cols.append(_hsv(h + shift, s, v) if s > 0.15 else _hsv(h, s, v * 0.85 + 0.05))
        return replace(look, colors=tuple(cols)), change
    if change == "period":
        f = float(rng.choice([1 / 1.3, 1.3]))
        noise = tuple((fx / f, fy / f, ph) for fx, fy, ph in look.noise)
        return replace(look, period=look.period * f, noise=noise), change
    if change == "dot_size":
        r = look.dot_radius * (1.4 if look.dot_radius < 0.25 else 0.7)
        return replace(look, dot_radius=r), change
    if look.logo is None:
        logo = Logo(0.0, 0.0, float(rng.uniform(0.025, 0.035)), "square",
                    _contrast_color(rng, look.colors[0]))  # fmt: skip
        return replace(look, logo=logo), "logo_added"
    return replace(look, logo=None), "logo_removed"


# ----------------------------------------------------------------------- geometry


def homography_from_quad(quad: np.ndarray) -> np.ndarray:
    """The 3x3 homography taking the unit square's corners (0,0),(1,0),(1,1),(0,1) to ``quad``."""
    src = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
    a = np.zeros((8, 8))
    b = np.zeros(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, np.asarray(quad, np.float64), strict=True)):
        a[2 * i] = [x, y, 1, 0, 0, 0, -u * x, -u * y]
        a[2 * i + 1] = [0, 0, 0, x, y, 1, -v * x, -v * y]
        b[2 * i], b[2 * i + 1] = u, v
    h = np.linalg.solve(a, b)
    return np.append(h, 1.0).reshape(3, 3)


def apply_homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Map (N, 2) points through ``h``."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    p = np.c_[pts, np.ones(len(pts))] @ h.T
    return p[:, :2] / p[:, 2:3]


# ----------------------------------------------------------------------- rendering


def _texture(look: ProductLook, x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray):
    """Fabric colour at body-unit coordinates (x, y); (u, v) are unit-box coordinates."""
    c1, c2, c3 = (np.asarray(c, np.float32) for c in look.colors)
    kind = look.texture
    if kind == "solid":
        m = np.zeros_like(x)
    elif kind == "stripes":
        t = (x * np.cos(look.angle) + y * np.sin(look.angle)) / look.period
        m = ((t % 1.0) < look.duty).astype(np.float32)
    elif kind == "checks":
        a = ((x / look.period) % 1.0) < look.duty
        b = ((y / look.period) % 1.0) < look.duty
        out = np.where((a & b)[..., None], c2, np.where((a | b)[..., None], (c1 + c2) / 2, c1))
        thin = (((x / look.period) % 1.0) > 0.9) | (((y / look.period) % 1.0) > 0.9)
        return np.where(thin[..., None], c3, out)  # plaid: a thin third-colour line
    elif kind == "dots":
        row = np.floor(y / look.period)
        xo = x / look.period + 0.5 * (row % 2)  # hexagonal packing: offset odd rows
        dx = (xo % 1.0) - 0.5
        dy = ((y / look.period) % 1.0) - 0.5
        m = (np.hypot(dx, dy) < look.dot_radius).astype(np.float32)
    elif kind == "gradient":
        t = (u - 0.5) * np.cos(look.angle) + (v - 0.5) * np.sin(look.angle) + 0.5
        m = np.clip(t, 0.0, 1.0)
    elif kind == "noise":  # camouflage-like blobs: thresholded sum of 4 plane waves
        f = sum(np.sin(2 * np.pi * (fx * x + fy * y) + ph) for fx, fy, ph in look.noise)
        f = f / 2.0
        return np.where((f > 0.5)[..., None], c3, np.where((f > -0.3)[..., None], c2, c1))
    else:
        raise ValueError(f"unknown texture kind {kind!r}; expected one of {TEXTURE_KINDS}")
    return c1 + (c2 - c1) * m[..., None]


def _polygon_mask(size: tuple[int, int], pts: np.ndarray, supersample: int = 2) -> np.ndarray:
    """Anti-aliased coverage (H, W) float32 of a polygon in pixel coordinates."""
    w, h = size
    img = Image.new("L", (w * supersample, h * supersample), 0)
    ImageDraw.Draw(img).polygon([tuple(p) for p in (pts * supersample).tolist()], fill=255)
    a = np.asarray(img, np.float32).reshape(h, supersample, w, supersample).mean(axis=(1, 3))
    return a / 255.0


def render_garment(
    shape: GarmentShape,
    look: ProductLook,
    h: np.ndarray,
    canvas: tuple[int, int],
    *,
    phys_size: tuple[float, float] | None = None,
    folds: tuple[float, float, float, float] = (0.0, 1.0, 1.0, 0.0),
    front: bool = True,
    line_width: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``shape`` in ``look`` through ``h`` (unit box -> pixels) on a ``canvas`` (W, H).

    ``folds`` = (amplitude, frequency u, frequency v, phase) of cloth wrinkle shading;
    ``front`` False hides front details (a back view). Returns the colour layer
    (H, W, 3) float32 in [0, 1] and the alpha (H, W) float32.
    """
    w, hgt = canvas
    pw, ph = phys_size or shape.size
    poly = apply_homography(h, np.array(shape.outline))
    alpha = _polygon_mask(canvas, poly)
    rgb = np.zeros((hgt, w, 3), np.float32)
    ys, xs = np.nonzero(alpha > 0)
    if len(ys) == 0:
        return rgb, alpha
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    gy, gx = np.mgrid[y0:y1, x0:x1].astype(np.float64) + 0.5
    uvw = np.stack([gx, gy, np.ones_like(gx)], -1) @ np.linalg.inv(h).T
    u = (uvw[..., 0] / uvw[..., 2]).astype(np.float32)
    v = (uvw[..., 1] / uvw[..., 2]).astype(np.float32)
    col = _texture(look, u * pw, v * ph, u, v).astype(np.float32)

    if shape.inner and front:  # the shirt visible through an open jacket
        inner = _polygon_mask(canvas, apply_homography(h, np.array(shape.inner)))[y0:y1, x0:x1]
        col = (
            col * (1 - inner[..., None])
            + np.asarray(look.inner_color, np.float32) * inner[..., None]
        )
    if look.logo is not None and front:
        lg = look.logo
        cu = shape.logo_anchor[0] + lg.du / pw
        cv = shape.logo_anchor[1] + lg.dv / ph
        dx, dy = (u - cu) * pw, (v - cv) * ph
        if lg.shape == "circle":
            m = np.hypot(dx, dy) < lg.size / 2
        else:
            m = (np.abs(dx) < lg.size / 2) & (np.abs(dy) < lg.size / 2)
        col = np.where(m[..., None], np.asarray(lg.color, np.float32), col)

    # Shading: wrinkles (a low-frequency sine in garment coordinates) and darker borders
    # (within ~2 px of the outline) give the flat fill some volume.
    amp, fu, fv, phase = folds
    shade = 1.0 + amp * np.sin(2 * np.pi * (fu * u + fv * v) + phase)
    inside = alpha[y0:y1, x0:x1] > 0.5
    dist = ndimage.distance_transform_edt(np.pad(inside, 1))[1:-1, 1:-1]
    shade = shade * (1.0 - 0.28 * np.exp(-dist / 1.5))

    # Seams / neckline / zip as darker strokes drawn through the same homography.
    lines = Image.new("L", canvas, 0)
    draw = ImageDraw.Draw(lines)
    for i, line in enumerate(shape.details):
        if not front and i in shape.front_only:
            continue
        pts = apply_homography(h, np.array(line))
        draw.line([tuple(p) for p in pts.tolist()], fill=255, width=line_width)
    if shape.category_id in (3, 4) and front:  # buttons along the zip line
        for t in (0.55, 0.7, 0.85):
            cx, cy = apply_homography(h, np.array([[0.5, t]]))[0]
            r = max(1.0, line_width * 0.9)
            draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    stroke = np.asarray(lines, np.float32)[y0:y1, x0:x1] / 255.0
    shade = shade * (1.0 - 0.45 * stroke)

    rgb[y0:y1, x0:x1] = np.clip(col * shade[..., None], 0.0, 1.0)
    return rgb, alpha
