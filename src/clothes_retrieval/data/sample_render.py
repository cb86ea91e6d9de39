"""Photo composition for the synthetic sample: shop and consumer photos with annotations.

Internal helper of :mod:`clothes_retrieval.data.sample`. A photo is rendered from one
``numpy`` Generator, so it depends only on that generator's seed. Every garment is drawn
through a homography and its annotation (outline, box, landmarks) is mapped by the same
homography, then clipped to the image, so pixels and annotations agree by construction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from clothes_retrieval.data.garments import (
    GARMENTS,
    GarmentShape,
    ProductLook,
    apply_homography,
    homography_from_quad,
    render_garment,
)

__all__ = ["PhotoItem", "render_consumer_photo", "render_shop_photo"]

SKIN_TONES = ((0.96, 0.8, 0.69), (0.87, 0.67, 0.53), (0.69, 0.48, 0.34), (0.45, 0.3, 0.2))


@dataclass(frozen=True)
class PhotoItem:
    """A garment to show: its category, look and style (0 = no shop counterpart)."""

    category_id: int
    look: ProductLook
    style: int


@dataclass
class _Placed:
    item: PhotoItem
    shape: GarmentShape
    h: np.ndarray  # unit box -> pixels
    mask: np.ndarray  # (H, W) bool, the garment's own pixels in the image
    covered: np.ndarray  # (H, W) bool, pixels drawn over it later (items, figures, occluders)
    viewpoint: int


# ------------------------------------------------------------------------ geometry


def _affine(scale_x: float, scale_y: float, angle: float, tx: float, ty: float) -> np.ndarray:
    """Body units -> pixels: scale, rotate by ``angle`` (radians), translate."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array(
        [[c * scale_x, -s * scale_y, tx], [s * scale_x, c * scale_y, ty], [0, 0, 1]], np.float64
    )


def clip_polygon(poly: np.ndarray, width: int, height: int) -> np.ndarray:
    """Sutherland-Hodgman clip of a polygon to the image rectangle [0, W] x [0, H]."""
    pts = [tuple(p) for p in np.asarray(poly, np.float64)]
    for axis, bound, keep_less in ((0, 0.0, False), (0, width, True), (1, 0.0, False),
                                   (1, height, True)):  # fmt: skip
        if not pts:
            break

        def inside(p, axis=axis, bound=bound, keep_less=keep_less):
            return p[axis] <= bound if keep_less else p[axis] >= bound

        def cross(p, q, axis=axis, bound=bound):
            t = (bound - p[axis]) / (q[axis] - p[axis])
            r = [p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1])]
            r[axis] = bound
            return tuple(r)

        out = []
        for i, cur in enumerate(pts):
            prev = pts[i - 1]
            if inside(cur):
                if not inside(prev):
                    out.append(cross(prev, cur))
                out.append(cur)
            elif inside(prev):
                out.append(cross(prev, cur))
        pts = out
    return np.array(pts, np.float64).reshape(-1, 2)


def _area(poly: np.ndarray) -> float:
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


def _annotate(p: _Placed, width: int, height: int) -> dict[str, Any]:
    """The DeepFashion2 item record of a placed garment."""
    full = apply_homography(p.h, np.array(p.shape.outline))
    seg = clip_polygon(full, width, height)
    if _area(seg) < 1.0:  # the layout keeps garments in frame; this would be a bug
        raise RuntimeError(f"a {p.shape.name} was placed outside the {width}x{height} image")
    x1, y1 = np.floor(seg.min(0)).astype(int)
    x2, y2 = np.ceil(seg.max(0)).astype(int)
    box = [int(max(x1, 0)), int(max(y1, 0)), int(min(x2, width)), int(min(y2, height))]

    landmarks: list[int] = []
    for x, y in apply_homography(p.h, np.array(p.shape.landmarks)):
        xi, yi = int(round(x)), int(round(y))
        if not (0 <= x < width and 0 <= y < height):
            landmarks += [0, 0, 0]  # outside the image: unlabelled
            continue
        xi, yi = min(xi, width - 1), min(yi, height - 1)
        landmarks += [xi, yi, 1 if p.covered[yi, xi] else 2]

    # zoom_in: how much of the garment the frame cuts off; occlusion: how much of what is
    # in frame is covered; scale: the box's share of the image (thresholds chosen so the
    # three levels are all populated in consumer photos).
    cut = 1.0 - _area(seg) / max(_area(full), 1e-9)
    zoom_in = 1 if cut < 0.03 else 2 if cut < 0.25 else 3
    n = int(p.mask.sum())
    occ = float((p.mask & p.covered).sum()) / max(n, 1)
    occlusion = 1 if occ < 0.2 else 2 if occ < 0.5 else 3
    box_frac = (box[2] - box[0]) * (box[3] - box[1]) / float(width * height)
    scale = 1 if box_frac < 0.12 else 2 if box_frac < 0.35 else 3
    return {
        "category_id": p.shape.category_id,
        "category_name": p.shape.name,
        "style": int(p.item.style),
        "bounding_box": box,
        "landmarks": landmarks,
        "segmentation": [[round(float(c), 2) for c in seg.reshape(-1)]],
        "scale": scale,
        "occlusion": occlusion,
        "zoom_in": zoom_in,
        "viewpoint": p.viewpoint,
    }


# --------------------------------------------------------------------- backgrounds


def _cluttered_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A street-like scene: sky/wall gradient, buildings with windows, ground, blobs."""
    top = rng.uniform(0.3, 0.95, 3)
    bottom = rng.uniform(0.1, 0.8, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = Image.fromarray(
        (255 * (top * (1 - t) + bottom * t) * np.ones((1, w, 1))).astype(np.uint8), "RGB"
    )
    d = ImageDraw.Draw(img)

    def col() -> tuple[int, int, int]:
        return tuple(int(c) for c in rng.integers(20, 235, 3))

    horizon = int(h * rng.uniform(0.55, 0.85))
    for _ in range(int(rng.integers(2, 6))):  # buildings: tall rectangles with windows
        bw = int(rng.integers(w // 8, w // 2))
        bx = int(rng.integers(-bw // 2, w))
        by = int(rng.integers(0, horizon // 2 + 1))
        d.rectangle([bx, by, bx + bw, horizon], fill=col())
        wc = col()
        step = int(rng.integers(6, 14))
        for yy in range(by + 3, horizon - 4, step):
            for xx in range(bx + 3, bx + bw - 4, step):
                d.rectangle([xx, yy, xx + step // 2, yy + step // 2], fill=wc)
    d.rectangle([0, horizon, w, h], fill=col())  # ground / pavement
    for _ in range(int(rng.integers(4, 12))):  # cars, trees, signs, passers-by
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        sx, sy = int(rng.integers(4, w // 4 + 5)), int(rng.integers(4, h // 4 + 5))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            d.ellipse([x, y, x + sx, y + sy], fill=col())
        elif kind == 1:
            d.rectangle([x, y, x + sx, y + sy], fill=col())
        elif kind == 2:
            pts = [(int(x + rng.integers(-sx, sx + 1)), int(y + rng.integers(-sy, sy + 1)))
                   for _ in range(int(rng.integers(3, 6)))]  # fmt: skip
            d.polygon(pts, fill=col())
        else:  # an awning: a striped rectangle (a hard negative for striped garments)
            c1, c2 = col(), col()
            for i, xx in enumerate(range(x, x + sx, 3)):
                d.rectangle([xx, y, xx + 2, y + sy // 3], fill=c1 if i % 2 else c2)
    img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.6, 1.6))))  # depth of field
    arr = np.asarray(img, np.float32) / 255.0
    return arr + rng.normal(0, 0.02, arr.shape).astype(np.float32)


def _shop_background(rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """A plain light studio background with a faint vertical gradient and tint."""
    base = rng.uniform(0.86, 0.98)
    tint = rng.uniform(-0.02, 0.02, 3)
    t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    arr = (base + tint - 0.05 * t) * np.ones((1, w, 3), np.float32)
    return arr.astype(np.float32)


def _composite(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray) -> None:
    canvas *= 1 - alpha[..., None]
    canvas += rgb * alpha[..., None]


def _fill_polys(size: tuple[int, int], polys: list[np.ndarray]) -> np.ndarray:
    img = Image.new("L", size, 0)
    draw = ImageDraw.Draw(img)
    for p in polys:
        draw.polygon([tuple(q) for q in p.tolist()], fill=255)
    return np.asarray(img, np.float32) / 255.0


def _ellipse(cx: float, cy: float, rx: float, ry: float, n: int = 20) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[cx + rx * np.cos(t), cy + ry * np.sin(t)]


def _limb(x0: float, y0: float, x1: float, y1: float, width: float) -> np.ndarray:
    """A thick segment as a quadrilateral, body units."""
    d = np.array([x1 - x0, y1 - y0])
    n = np.array([-d[1], d[0]]) / (np.linalg.norm(d) + 1e-9) * width / 2
    return np.array([[x0, y0] + n, [x1, y1] + n, [x1, y1] - n, [x0, y0] - n])


# -------------------------------------------------------------------------- photos


def _jpeg_line_width(item_px: float) -> int:
    return max(1, int(round(item_px / 90)))  # ~1 px seams on consumer items, 2 px in shop


def render_shop_photo(
    rng: np.random.Generator, item: PhotoItem, long_side: int
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """One garment, centred and frontal on a plain light background (viewpoint 1)."""
    shape = GARMENTS[item.category_id]
    gw, gh = shape.size
    tall = gh / gw > 1.15
    w, h = (int(long_side * 0.75), long_side) if tall else (long_side, long_side)
    fill = rng.uniform(0.6, 0.88)  # the garment spans 60-88% of the limiting side
    s = min(w * fill / gw, h * fill / gh)
    cx = w / 2 + rng.uniform(-0.03, 0.03) * w
    cy = h / 2 + rng.uniform(-0.03, 0.03) * h
    hw, hh = gw * s / 2, gh * s / 2
    quad = np.array(
        [[cx - hw, cy - hh], [cx + hw, cy - hh], [cx + hw, cy + hh], [cx - hw, cy + hh]]
    )
    hm = homography_from_quad(quad)
    canvas = _shop_background(rng, w, h)
    folds = (rng.uniform(0.0, 0.04), rng.uniform(0.5, 2), rng.uniform(0.5, 3), rng.uniform(0, 6))
    rgb, alpha = render_garment(
        shape, item.look, hm, (w, h), folds=folds, line_width=_jpeg_line_width(gh * s)
    )
    # A soft drop shadow down-right of the garment, as in catalogue photos.
    shadow = Image.fromarray((alpha * 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(3))
    sh = np.roll(np.asarray(shadow, np.float32) / 255.0, (3, 3), axis=(0, 1)) * 0.25
    canvas *= 1 - sh[..., None]
    _composite(canvas, rgb, alpha)
    canvas += rng.normal(0, 0.008, canvas.shape).astype(np.float32)
    placed = _Placed(item, shape, hm, alpha > 0.5, np.zeros((h, w), bool), 1)
    img = (np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8)
    return img, [_annotate(placed, w, h)]


def render_consumer_photo(
    rng: np.random.Generator,
    columns: list[list[PhotoItem]],
    long_side: int,
    *,
    occluder_prob: float,
    side_view_prob: float,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """People in a street scene wearing the garments; each column is one person's outfit.

    A column holds one upper-body or full-body garment and/or one lower-body garment.
    Per person: scale, small rotation, mild perspective per garment, optional side view;
    then an optional occluder, and per photo lighting, blur and noise.
    """
    n = len(columns)
    if n == 1:
        w, h = (int(long_side * 0.75), long_side) if rng.random() < 0.75 else (long_side,) * 2
    else:
        w, h = (long_side, int(long_side * 0.75)) if rng.random() < 0.6 else (long_side,) * 2
    canvas = _cluttered_background(rng, w, h)
    placed: list[_Placed] = []
    order = rng.permutation(n)  # which person stands in front where they overlap

    def cover(mask: np.ndarray) -> None:
        for p in placed:
            p.covered |= mask

    skin = SKIN_TONES[int(rng.integers(0, len(SKIN_TONES)))]
    for ci in order.tolist():
        items = sorted(columns[ci], key=lambda it: GARMENTS[it.category_id].region != "lower")
        shapes = [GARMENTS[it.category_id] for it in items]
        gy0 = min(sh.top for sh in shapes)
        gy1 = max(sh.top + sh.size[1] for sh in shapes)
        gwid = max(sh.size[0] for sh in shapes)
        side = rng.random() < side_view_prob
        sx = rng.uniform(0.72, 0.85) if side else 1.0  # side view: the body looks narrower
        # px per body unit: the outfit spans 65-95% of the height (a quarter of the time
        # 100-125%, cut by the frame: zoom_in) and fits its share of the width.
        fh = rng.uniform(1.0, 1.25) if rng.random() < 0.25 else rng.uniform(0.65, 0.95)
        s = min(h * fh / (gy1 - gy0), (w / n) * rng.uniform(0.8, 0.98) / (gwid * sx))
        ang = rng.uniform(-0.12, 0.12)  # up to ~7 degrees of lean
        cx = (ci + 0.5) * w / n + rng.uniform(-0.08, 0.08) * w / n
        cy = h / 2 + rng.uniform(-0.06, 0.06) * h
        body = _affine(s * sx, s, ang, 0, 0)
        mid = apply_homography(body, np.array([[0.0, (gy0 + gy1) / 2]]))[0]
        body = _affine(s * sx, s, ang, cx - mid[0], cy - mid[1])

        # The person: legs, arms, neck and head in skin tone, drawn before the garments.
        torso = np.array([[-0.11, 0.19], [0.11, 0.19], [0.085, 0.52], [-0.085, 0.52]])
        parts = [_ellipse(0, 0.075, 0.055, 0.068), _limb(0, 0.1, 0, 0.2, 0.045), torso]
        parts += [_limb(sg * 0.11, 0.2, sg * 0.2, 0.56, 0.045) for sg in (-1, 1)]
        parts += [_limb(sg * 0.065, 0.5, sg * 0.07, 0.97, 0.06) for sg in (-1, 1)]
        hair = _ellipse(0, 0.045, 0.06, 0.05)
        fig = _fill_polys((w, h), [apply_homography(body, p) for p in parts])
        _composite(canvas, np.broadcast_to(np.array(skin, np.float32), canvas.shape), fig)
        hair_a = _fill_polys((w, h), [apply_homography(body, hair)])
        hair_c = rng.uniform(0.05, 0.45) * np.array([1.0, 0.8, 0.6], np.float32)
        _composite(canvas, np.broadcast_to(hair_c, canvas.shape), hair_a)
        cover((fig > 0.5) | (hair_a > 0.5))

        viewpoint = 3 if side else 2
        folds = (rng.uniform(0.03, 0.1), rng.uniform(0.5, 3), rng.uniform(0.5, 4),
                 rng.uniform(0, 6))  # fmt: skip
        for it, sh in zip(items, shapes, strict=True):
            gw, gh = sh.size
            x0 = -gw / 2
            corners = np.array([[x0, sh.top], [x0 + gw, sh.top], [x0 + gw, sh.top + gh],
                                [x0, sh.top + gh]])  # fmt: skip
            quad = apply_homography(body, corners)
            # Mild perspective: each corner moves by up to ~4% of the garment's size.
            quad += rng.uniform(-0.04, 0.04, (4, 2)) * np.array([gw * s * sx, gh * s])
            hm = homography_from_quad(quad)
            rgb, alpha = render_garment(
                sh, it.look, hm, (w, h), folds=folds, front=not (side and rng.random() < 0.5),
                line_width=_jpeg_line_width(gh * s),
            )  # fmt: skip
            _composite(canvas, rgb, alpha)
            mask = alpha > 0.5
            cover(mask)
            placed.append(_Placed(it, sh, hm, mask, np.zeros((h, w), bool), viewpoint))

    if placed and rng.random() < occluder_prob:
        _draw_occluder(rng, canvas, placed, cover, skin)

    # Lighting: brightness, contrast, colour cast, a light gradient; then blur and noise.
    gain = rng.uniform(0.75, 1.2) * rng.uniform(0.9, 1.1, 3).astype(np.float32)
    contrast = rng.uniform(0.8, 1.15)
    ramp = np.linspace(rng.uniform(0.85, 1.1), rng.uniform(0.85, 1.1), w, dtype=np.float32)
    canvas = ((canvas - 0.5) * contrast + 0.5) * gain * ramp[None, :, None]
    img = Image.fromarray((np.clip(canvas, 0, 1) * 255 + 0.5).astype(np.uint8), "RGB")
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(0.3, 0.9))))
    arr = np.asarray(img, np.float32) + rng.normal(0, rng.uniform(1.0, 5.0), (h, w, 3))
    out = np.clip(arr + 0.5, 0, 255).astype(np.uint8)
    return out, [_annotate(p, w, h) for p in placed]


def _draw_occluder(rng, canvas, placed, cover, skin) -> None:
    """Something in front of one garment: a bag, a pole, a hand or a sign (10-40% of it)."""
    h, w = canvas.shape[:2]
    target = placed[int(rng.integers(0, len(placed)))]
    ys, xs = np.nonzero(target.mask)
    if len(ys) == 0:
        return
    k = int(rng.integers(0, len(ys)))
    cx, cy = float(xs[k]), float(ys[k])
    bw = float(xs.max() - xs.min() + 1)
    bh = float(ys.max() - ys.min() + 1)
    kind = int(rng.integers(0, 4))
    color = rng.uniform(0.05, 0.9, 3).astype(np.float32)
    if kind == 0:  # a bag: a rounded box with a strap
        rx, ry = bw * rng.uniform(0.18, 0.3), bh * rng.uniform(0.15, 0.25)
        poly = _ellipse(cx, cy, rx, ry, 12)
        poly = np.clip(poly, [cx - rx * 0.9, cy - ry * 0.9], [cx + rx * 0.9, cy + ry])
        polys = [poly, _limb(cx - rx * 0.6, cy - ry, cx + rx * 0.2, cy - ry - bh * 0.3, 2.0)]
    elif kind == 1:  # a pole / lamp post in the foreground
        pw = max(3.0, bw * rng.uniform(0.1, 0.2))
        polys = [np.array([[cx - pw / 2, 0], [cx + pw / 2, 0], [cx + pw / 2, h],
                           [cx - pw / 2, h]])]  # fmt: skip
    elif kind == 2:  # a hand / forearm across the garment
        color = np.array(skin, np.float32)
        a = rng.uniform(0, np.pi)
        ln = bw * rng.uniform(0.3, 0.5)
        polys = [_limb(cx - ln * np.cos(a), cy - ln * np.sin(a), cx, cy, bw * 0.12),
                 _ellipse(cx, cy, bw * 0.09, bw * 0.09, 10)]  # fmt: skip
    else:  # a sign or box held in front
        rx, ry = bw * rng.uniform(0.15, 0.3), bh * rng.uniform(0.1, 0.2)
        polys = [np.array([[cx - rx, cy - ry], [cx + rx, cy - ry], [cx + rx, cy + ry],
                           [cx - rx, cy + ry]])]  # fmt: skip
    a = _fill_polys((w, h), polys)
    _composite(canvas, np.broadcast_to(color, canvas.shape), a)
    cover(a > 0.5)
