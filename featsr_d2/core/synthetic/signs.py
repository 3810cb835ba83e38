"""Traffic-sign templates drawn from scratch under the Tsinghua-Tencent 100K category names.

Each sign is vector-drawn with a :class:`~featsr_d2.core.synthetic.painter.Painter` on a
supersampled canvas and reduced with a box filter, which gives an antialiased RGBA template whose
alpha channel is the sign's silhouette. The designs follow the Chinese GB 5768 signs that TT100K
photographs, simplified to pictograms (:mod:`~featsr_d2.core.synthetic.pictograms`): what matters
for detection is that every class has its own consistent look and that many classes differ only in
fine detail (the digits of the speed limits, a "t" or an "m", the glyph inside a red ring), which
becomes illegible when a sign is small.

:func:`render_sign` draws one template; :func:`get_template` caches it per process, and
:func:`sign_model` caches it in the form image composition uses.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from featsr_d2.core.synthetic.painter import Painter, Point
from featsr_d2.core.synthetic.pictograms import (
    arrow_diag,
    arrow_turn,
    arrow_up,
    arrow_uturn,
    bicycle,
    bus,
    car,
    crossroads,
    exclamation,
    flame,
    horn,
    merge,
    motorcycle,
    person,
    rang,
    roadworks,
    truck,
)
from featsr_d2.core.tt100k_categories import TYPE45

__all__ = [
    "SIGN_CATEGORIES",
    "TEMPLATE_SIZE",
    "SignModel",
    "SignTemplate",
    "get_template",
    "is_drawable",
    "render_sign",
    "sign_model",
    "sign_shape",
]

# Side of a cached template in pixels: enough for the largest pasted sign (200 px) to be downscaled.
TEMPLATE_SIZE = 256
# Drawing happens at this multiple of the template size, then is box-filtered down (antialiasing).
_SUPERSAMPLE = 4

RED = (200, 28, 42)
BLUE = (18, 72, 168)
YELLOW = (250, 196, 22)
BLACK = (22, 22, 24)
WHITE = (246, 246, 242)
GREY = (110, 110, 112)


@dataclass(frozen=True)
class SignTemplate:
    """A rendered sign.

    Attributes:
        category: TT100K category name.
        shape: silhouette kind: "circle", "triangle", "inverted_triangle" or "square".
        rgba: (S, S, 4) uint8 image; alpha is the silhouette, color is not premultiplied.
        outline: (K, 2) float32 points on the silhouette boundary in template pixel coordinates
            (x, y); the polygon corners, or points around the circle.
    """

    category: str
    shape: str
    rgba: np.ndarray
    outline: np.ndarray


# --------------------------------------------------------------------------------------------------
# Sign bodies.
# --------------------------------------------------------------------------------------------------

_R = 0.97  # outer radius of round signs (unit space)
_TRI_SIDE = 1.94  # side of triangular signs


def _triangle_pts(side: float, inverted: bool) -> list[Point]:
    h = side * math.sqrt(3) / 2
    # Centre the triangle's box vertically in the canvas.
    top, bottom = -h / 2, h / 2
    if inverted:
        return [(-side / 2, top), (side / 2, top), (0.0, bottom)]
    return [(0.0, top), (side / 2, bottom), (-side / 2, bottom)]


def _inset_triangle(pts: list[Point], d: float) -> list[Point]:
    """Move each vertex of an equilateral triangle towards its centroid by an edge inset of d."""
    cx = sum(x for x, _ in pts) / 3
    cy = sum(y for _, y in pts) / 3
    # The inradius shrinks by d, the circumradius (vertex distance) by 2d.
    out = []
    for x, y in pts:
        vx, vy = x - cx, y - cy
        n = math.hypot(vx, vy)
        k = (n - 2 * d) / n
        out.append((cx + vx * k, cy + vy * k))
    return out


def _round_triangle(p: Painter, pts: list[Point], fill, r: float) -> None:
    """A triangle with rounded corners: the inset triangle dilated by circles at its corners."""
    inner = _inset_triangle(pts, r)
    p.polygon(inner, fill)
    for a, b in zip(inner, inner[1:] + inner[:1]):
        p.line([a, b], 2 * r, fill)


def _prohibitory(p: Painter, glyph: Callable[[Painter], None]) -> None:
    """Red ring, white disk, black glyph, red slash from top left to bottom right."""
    p.circle(_R, RED)
    p.circle(_R - 0.19, WHITE)
    glyph(p)
    d = (_R - 0.15) * math.sqrt(0.5)
    p.line([(-d, -d), (d, d)], 0.15, RED, round_caps=False)


def _limit(p: Painter, text: str) -> None:
    """Red ring, white disk, black text (speed and weight limits)."""
    p.circle(_R, RED)
    p.circle(_R - 0.19, WHITE)
    n = len(text)
    height = {1: 0.82, 2: 0.74, 3: 0.6}.get(n, 0.52)
    p.text(text, (0.0, 0.02), 1.24 if n < 3 else 1.32, height, BLACK)


def _height_arrows(p: Painter) -> None:
    for y0, y1 in ((-0.72, -0.44), (0.72, 0.44)):
        p.polygon([(-0.16, y0), (0.16, y0), (0.0, y1)], BLACK)


def _blue_disk(p: Painter) -> None:
    p.circle(_R, WHITE)
    p.circle(_R - 0.05, BLUE)


def _warning(p: Painter, glyph: Callable[[Painter], None]) -> None:
    pts = _triangle_pts(_TRI_SIDE, inverted=False)
    _round_triangle(p, pts, YELLOW, 0.05)
    _round_triangle(p, _inset_triangle(pts, 0.04), BLACK, 0.06)
    _round_triangle(p, _inset_triangle(pts, 0.18), YELLOW, 0.03)
    # The glyph sits on the triangle's centroid, below the canvas centre.
    p.image.alpha_composite(_shifted(p, glyph, (0.0, 0.2), 0.66))


_NUMBERED = re.compile(r"^(pl|pm|ph|il|pr)(\d+(?:\.\d+)?)$")


def _draw_sign(p: Painter, category: str) -> str:
    """Draw `category` on the painter; return its silhouette shape."""
    name = category
    numbered = _NUMBERED.match(name)
    if numbered is not None:
        kind, number = numbered.groups()
        if kind == "pl":  # speed limit
            _limit(p, number)
        elif kind == "pm":  # weight limit
            _limit(p, number + "t")
        elif kind == "ph":  # height limit
            p.circle(_R, RED)
            p.circle(_R - 0.19, WHITE)
            text = number + "m"
            p.text(text, (0.0, 0.0), 1.2, 0.5 if len(text) <= 2 else 0.44, BLACK)
            _height_arrows(p)
        elif kind == "il":  # minimum speed
            _blue_disk(p)
            p.text(number, (0.0, 0.02), 1.3, 0.74 if len(number) < 3 else 0.6, WHITE)
        else:  # "pr": end of speed limit
            p.circle(_R, BLACK)
            p.circle(_R - 0.06, WHITE)
            p.text(number, (0.0, 0.02), 1.24, 0.74 if len(number) < 3 else 0.6, GREY)
            for off in (-0.16, -0.05, 0.06, 0.17):  # release bars, lower left to upper right
                a = (-0.62 + off, 0.62 + off)
                b = (0.62 + off, -0.62 + off)
                p.line([a, b], 0.035, BLACK, round_caps=False)
        return "circle"
    if name == "pn":
        p.circle(_R, RED)
        p.circle(_R - 0.19, BLUE)
        r = _R - 0.12
        p.line([(-r * 0.707, -r * 0.707), (r * 0.707, r * 0.707)], 0.15, RED, round_caps=False)
        return "circle"
    if name == "pne":
        p.circle(_R, WHITE)
        p.circle(_R - 0.04, RED)
        p.rect(-0.64, -0.15, 0.64, 0.15, WHITE)
        return "circle"
    if name == "pg":
        pts = _triangle_pts(_TRI_SIDE, inverted=True)
        _round_triangle(p, pts, RED, 0.05)
        _round_triangle(p, _inset_triangle(pts, 0.2), WHITE, 0.02)
        p.image.alpha_composite(_shifted(p, lambda q: rang(q, BLACK), (0.0, -0.24), 0.72))
        return "inverted_triangle"
    if name == "ip":
        p.rect(-_R, -_R, _R, _R, WHITE, radius=0.08)
        p.rect(-_R + 0.05, -_R + 0.05, _R - 0.05, _R - 0.05, BLUE, radius=0.06)
        tri = _triangle_pts(1.5, inverted=False)
        p.polygon([(x, y - 0.02) for x, y in tri], WHITE)
        for i in range(4):
            x0 = -0.5 + i * 0.27
            p.polygon([(x0, 0.62), (x0 + 0.14, 0.62), (x0 + 0.08, 0.5), (x0 - 0.04, 0.5)], BLUE)
        person(p, BLUE, (0.0, 0.1), 0.62, stride=1.0)
        return "square"
    mandatory = {
        "i2": lambda q: bicycle(q, WHITE, 1.3),
        "i4": lambda q: car(q, WHITE, BLUE, 1.05),
        "i5": lambda q: arrow_diag(q, WHITE),
        "io": lambda q: arrow_up(q, WHITE),
    }
    if name in mandatory:
        _blue_disk(p)
        mandatory[name](p)
        return "circle"
    prohibitory = {
        "p3": lambda q: bus(q, BLACK, WHITE),
        "p5": lambda q: arrow_uturn(q, BLACK),
        "p6": lambda q: bicycle(q, BLACK, 1.15),
        "p10": lambda q: car(q, BLACK, WHITE),
        "p11": lambda q: horn(q, BLACK),
        "p12": lambda q: motorcycle(q, BLACK),
        "p19": lambda q: arrow_turn(q, BLACK, right=True),
        "p23": lambda q: arrow_turn(q, BLACK, right=False),
        "p26": lambda q: truck(q, BLACK, WHITE),
        "p27": lambda q: flame(q, BLACK, WHITE),
        "po": lambda q: person(q, BLACK, (0.0, 0.06), 1.05),
    }
    if name in prohibitory:
        _prohibitory(p, prohibitory[name])
        return "circle"
    warning = {
        "w13": lambda q: crossroads(q, BLACK),
        "w32": lambda q: roadworks(q, BLACK),
        "w55": lambda q: (
            person(q, BLACK, (-0.22, 0.02), 0.95),
            person(q, BLACK, (0.3, 0.14), 0.75),
        ),
        "w57": lambda q: person(q, BLACK, (0.0, 0.04), 1.05),
        "w59": lambda q: merge(q, BLACK),
        "wo": lambda q: exclamation(q, BLACK),
    }
    if name in warning:
        _warning(p, warning[name])
        return "triangle"
    raise KeyError(f"no drawing for sign category {category!r}")


def _shifted(p: Painter, glyph: Callable, offset: Point, scale: float) -> Image.Image:
    """Draw `glyph` on a separate layer, scaled about the centre and shifted (unit space)."""
    size = p.size
    q = Painter(size)
    glyph(q)
    w = max(1, round(size * scale))
    layer = q.image.resize((w, w), Image.Resampling.BOX)
    out = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    dx = round((size - w) / 2 + p.len(offset[0]))
    dy = round((size - w) / 2 + p.len(offset[1]))
    out.paste(layer, (dx, dy))
    return out


SIGN_CATEGORIES = TYPE45
"""Categories with a dedicated design (TT100K's type45). Any other ``pl<N>``, ``pm<N>``, ``ph<N>``,
``il<N>`` or ``pr<N>`` name is drawable too: the number is printed on the sign."""


def is_drawable(category: str) -> bool:
    """Whether :func:`render_sign` knows how to draw `category`."""
    return category in SIGN_CATEGORIES or _NUMBERED.match(category) is not None


def sign_shape(category: str) -> str:
    """The silhouette kind of `category` ("circle", "triangle", "inverted_triangle" or "square")."""
    return get_template(category).shape


def _outline(shape: str, size: int) -> np.ndarray:
    """Silhouette boundary points in template pixel coordinates."""
    if shape == "circle":
        t = np.linspace(0.0, 2 * np.pi, 8, endpoint=False)
        pts = np.stack([_R * np.cos(t), _R * np.sin(t)], axis=1)
    elif shape in ("triangle", "inverted_triangle"):
        pts = np.array(_triangle_pts(_TRI_SIDE, inverted=shape == "inverted_triangle"))
    elif shape == "square":
        pts = np.array([(-_R, -_R), (_R, -_R), (_R, _R), (-_R, _R)])
    else:
        raise ValueError(shape)
    return ((pts + 1.0) * 0.5 * size).astype(np.float32)


def render_sign(category: str, size: int = TEMPLATE_SIZE) -> SignTemplate:
    """Draw the sign of `category` as a `size` x `size` RGBA template (antialiased)."""
    painter = Painter(size * _SUPERSAMPLE)
    shape = _draw_sign(painter, category)
    # Box-filter down in premultiplied alpha so that edges do not pick up the transparent black.
    small = painter.image.convert("RGBa").reduce(_SUPERSAMPLE).convert("RGBA")
    rgba = np.array(small, dtype=np.uint8)
    rgba.setflags(write=False)
    return SignTemplate(category, shape, rgba, _outline(shape, size))


@functools.cache
def get_template(category: str) -> SignTemplate:
    """The cached :data:`TEMPLATE_SIZE` template of `category` (rendered once per process)."""
    return render_sign(category, TEMPLATE_SIZE)


@dataclass(frozen=True)
class SignModel:
    """A template in the form image composition uses."""

    premultiplied: np.ndarray  # (T, T, 4) uint8, colour multiplied by alpha
    contour: np.ndarray  # (K, 1, 2) float32 silhouette boundary, template pixel coordinates
    outline: np.ndarray  # (K', 1, 2) float32 annotation points (polygon corners or ellipse points)
    shape: str


@functools.cache
def sign_model(category: str) -> SignModel:
    """The cached :class:`SignModel` of `category` (built once per process)."""
    tpl = get_template(category)
    rgba = tpl.rgba.astype(np.uint16)
    premult = rgba.copy()
    premult[..., :3] = (rgba[..., :3] * rgba[..., 3:4] + 127) // 255
    mask = (tpl.rgba[..., 3] >= 128).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    contour = max(contours, key=cv2.contourArea).astype(np.float32)
    return SignModel(
        premultiplied=premult.astype(np.uint8),
        contour=contour,
        outline=tpl.outline.reshape(-1, 1, 2).astype(np.float32),
        shape=tpl.shape,
    )
