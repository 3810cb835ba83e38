"""Traffic-sign templates drawn from scratch under the Tsinghua-Tencent 100K category names.

Each sign is vector-drawn with Pillow on a supersampled canvas and reduced with a box filter, which
gives an antialiased RGBA template whose alpha channel is the sign's silhouette. The designs follow
the Chinese GB 5768 signs that TT100K photographs, simplified to pictograms: what matters for
detection is that every class has its own consistent look and that many classes differ only in fine
detail (the digits of the speed limits, a "t" or an "m", the glyph inside a red ring), which becomes
illegible when a sign is small.

:func:`render_sign` draws one template; :func:`get_template` caches it per process.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from featsr_d2.data.tt100k_categories import TYPE45

__all__ = [
    "SIGN_CATEGORIES",
    "TEMPLATE_SIZE",
    "SignTemplate",
    "get_template",
    "is_drawable",
    "render_sign",
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

Point = tuple[float, float]


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
# Drawing in unit coordinates: x, y in [-1, 1] across the canvas, y pointing down.
# --------------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.FreeTypeFont | None:
    """DejaVu Sans Bold from matplotlib's data, or None when matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return None
    path = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans-Bold.ttf")
    if not os.path.isfile(path):
        return None
    return ImageFont.truetype(path, size)


def _text_mask(text: str) -> Image.Image:
    """A tight grayscale mask of `text` in a bold sans font (Hershey strokes without TrueType)."""
    font = _font(400)
    if font is not None:
        left, top, right, bottom = font.getbbox(text)
        img = Image.new("L", (right - left + 8, bottom - top + 8), 0)
        ImageDraw.Draw(img).text((4 - left, 4 - top), text, fill=255, font=font)
    else:
        import cv2

        face, scale, thick = cv2.FONT_HERSHEY_DUPLEX, 10.0, 28
        (w, h), base = cv2.getTextSize(text, face, scale, thick)
        arr = np.zeros((h + base + 2 * thick, w + 2 * thick), np.uint8)
        cv2.putText(arr, text, (thick, h + thick), face, scale, 255, thick, cv2.LINE_AA)
        img = Image.fromarray(arr)
    bbox = img.getbbox()
    return img.crop(bbox) if bbox else img


class _Painter:
    """Pillow drawing with coordinates and widths in unit space."""

    def __init__(self, size: int):
        self.size = size
        self.image = Image.new("RGBA", (size, size), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.image)

    def px(self, p: Point) -> Point:
        return ((p[0] + 1.0) * 0.5 * self.size, (p[1] + 1.0) * 0.5 * self.size)

    def len(self, v: float) -> float:
        return v * 0.5 * self.size

    def circle(self, r: float, fill, c: Point = (0.0, 0.0)) -> None:
        x, y = self.px(c)
        rr = self.len(r)
        self.draw.ellipse((x - rr, y - rr, x + rr, y + rr), fill=fill)

    def ring(self, r: float, width: float, fill, c: Point = (0.0, 0.0)) -> None:
        x, y = self.px(c)
        rr = self.len(r)
        self.draw.ellipse(
            (x - rr, y - rr, x + rr, y + rr), outline=fill, width=round(self.len(width))
        )

    def ellipse(self, c: Point, rx: float, ry: float, fill) -> None:
        x, y = self.px(c)
        self.draw.ellipse(
            (x - self.len(rx), y - self.len(ry), x + self.len(rx), y + self.len(ry)), fill
        )

    def polygon(self, pts: Sequence[Point], fill) -> None:
        self.draw.polygon([self.px(p) for p in pts], fill=fill)

    def rect(self, x0: float, y0: float, x1: float, y1: float, fill, radius: float = 0.0) -> None:
        box = (*self.px((x0, y0)), *self.px((x1, y1)))
        if radius > 0:
            self.draw.rounded_rectangle(box, radius=self.len(radius), fill=fill)
        else:
            self.draw.rectangle(box, fill=fill)

    def line(self, pts: Sequence[Point], width: float, fill, round_caps: bool = True) -> None:
        """A thick polyline with rounded joints and (optionally) rounded ends."""
        w = self.len(width)
        self.draw.line([self.px(p) for p in pts], fill=fill, width=max(1, round(w)), joint="curve")
        if round_caps:
            for p in (pts[0], pts[-1]):
                self.circle(width / 2, fill, p)

    def arc_points(self, c: Point, r: float, a0: float, a1: float, n: int = 24) -> list[Point]:
        """Points on a circular arc; angles in degrees, 0 = +x, 90 = +y (down)."""
        ts = np.linspace(math.radians(a0), math.radians(a1), n)
        return [(c[0] + r * math.cos(t), c[1] + r * math.sin(t)) for t in ts]

    def text(self, text: str, center: Point, max_w: float, height: float, fill) -> None:
        """`text` scaled to `height`, condensed when wider than `max_w` (unit lengths)."""
        mask = _text_mask(text)
        h = max(1, round(self.len(height)))
        w = max(1, round(mask.width * h / mask.height))
        w = min(w, max(1, round(self.len(max_w))))
        mask = mask.resize((w, h), Image.Resampling.LANCZOS)
        x, y = self.px(center)
        layer = Image.new("RGBA", mask.size, fill if len(fill) == 4 else (*fill, 255))
        self.image.paste(layer, (round(x - w / 2), round(y - h / 2)), mask)


# --------------------------------------------------------------------------------------------------
# Pictograms (drawn in unit space around the sign centre, fitting roughly inside radius 0.6).
# --------------------------------------------------------------------------------------------------


def _arrow_up(p: _Painter, color) -> None:
    p.rect(-0.12, -0.12, 0.12, 0.62, color)
    p.polygon([(-0.38, -0.08), (0.38, -0.08), (0.0, -0.62)], color)


def _arrow_diag(p: _Painter, color) -> None:
    """Keep-right arrow: the up arrow turned by 135 degrees to point down to the right."""
    c, s = -math.sqrt(0.5), math.sqrt(0.5)

    def rot(x: float, y: float) -> Point:
        return (x * c - y * s, x * s + y * c)

    p.polygon([rot(*q) for q in [(-0.12, -0.1), (0.12, -0.1), (0.12, 0.6), (-0.12, 0.6)]], color)
    p.polygon([rot(*q) for q in [(-0.38, -0.06), (0.38, -0.06), (0.0, -0.6)]], color)


def _arrow_turn(p: _Painter, color, right: bool) -> None:
    """An arrow going up then turning 90 degrees to the right (mirrored for left)."""
    m = 1.0 if right else -1.0
    r, x0, cy = 0.28, -0.26, 0.0
    cx = x0 + r
    pts = [(x0, 0.62), (x0, cy)] + p.arc_points((cx, cy), r, 180.0, 270.0, 20)
    pts.append((cx + 0.14, cy - r))
    p.line([(m * x, y) for x, y in pts], 0.22, color, round_caps=False)
    head = [(cx + 0.12, cy - r - 0.3), (cx + 0.12, cy - r + 0.3), (cx + 0.56, cy - r)]
    p.polygon([(m * x, y) for x, y in head], color)


def _arrow_uturn(p: _Painter, color) -> None:
    r = 0.24
    cx, cy = 0.0, -0.12
    pts = [(r, 0.62), (r, cy)] + p.arc_points((cx, cy), r, 0.0, -180.0, 24) + [(-r, 0.12)]
    p.line(pts, 0.2, color, round_caps=False)
    p.polygon([(-r - 0.27, 0.06), (-r + 0.27, 0.06), (-r, 0.48)], color)


def _car(p: _Painter, color, bg, s: float = 1.0) -> None:
    """Side view of a car facing left, scaled by `s`."""

    def q(x: float, y: float) -> Point:
        return (x * s, y * s)

    p.polygon([q(-0.62, 0.02), q(-0.56, -0.08), q(-0.3, -0.12), q(-0.16, -0.34), q(0.3, -0.34),
               q(0.46, -0.1), q(0.62, -0.06), q(0.64, 0.16), q(-0.62, 0.16)], color)  # fmt: skip
    p.polygon([q(-0.1, -0.27), q(0.06, -0.27), q(0.06, -0.12), q(-0.2, -0.12)], bg)
    p.polygon([q(0.12, -0.27), q(0.26, -0.27), q(0.37, -0.12), q(0.12, -0.12)], bg)
    for x in (-0.36, 0.38):
        p.circle(0.17 * s, bg, q(x, 0.17))
        p.circle(0.13 * s, color, q(x, 0.17))


def _truck(p: _Painter, color, bg) -> None:
    """Side view of a lorry facing left: cab and a tall cargo box, three wheels."""
    p.polygon([(-0.66, 0.18), (-0.66, -0.06), (-0.56, -0.26), (-0.34, -0.26), (-0.34, 0.18)], color)
    p.polygon([(-0.6, -0.06), (-0.53, -0.2), (-0.42, -0.2), (-0.42, -0.06)], bg)
    p.rect(-0.3, -0.44, 0.68, 0.12, color)
    p.rect(-0.66, 0.1, 0.68, 0.2, color)
    for x in (-0.46, 0.28, 0.5):
        p.circle(0.14, bg, (x, 0.24))
        p.circle(0.105, color, (x, 0.24))


def _bus(p: _Painter, color, bg) -> None:
    """Side view of a coach with a row of windows."""
    p.rect(-0.66, -0.32, 0.66, 0.18, color, radius=0.08)
    for x in np.linspace(-0.5, 0.42, 5):
        p.rect(x, -0.22, x + 0.14, -0.04, bg)
    p.rect(-0.62, -0.22, -0.56, 0.08, bg)
    for x in (-0.36, 0.38):
        p.circle(0.15, bg, (x, 0.2))
        p.circle(0.11, color, (x, 0.2))


def _bicycle(p: _Painter, color, s: float = 1.0) -> None:
    w = 0.07 * s
    rw = 0.25 * s
    back, front = (-0.36 * s, 0.2 * s), (0.36 * s, 0.2 * s)
    for c in (back, front):
        p.ring(rw, w, color, c)
    crank = (-0.02 * s, 0.2 * s)
    seat = (-0.14 * s, -0.16 * s)
    head = (0.24 * s, -0.16 * s)
    p.line([back, crank, head, front], w, color)
    p.line([back, seat, crank], w, color)
    p.line([seat, head], w, color)
    p.line([(-0.24 * s, -0.2 * s), (-0.06 * s, -0.2 * s)], w * 1.3, color)  # saddle
    p.line([head, (0.2 * s, -0.3 * s), (0.32 * s, -0.32 * s)], w, color)  # handlebar


def _motorcycle(p: _Painter, color) -> None:
    for x in (-0.4, 0.4):
        p.ring(0.22, 0.09, color, (x, 0.22))
    p.polygon([(-0.36, 0.04), (-0.14, -0.12), (0.14, -0.14), (0.22, 0.06), (-0.1, 0.14)], color)
    p.rect(-0.42, -0.16, -0.08, -0.08, color, radius=0.03)  # seat
    p.line([(0.16, -0.1), (0.4, 0.22)], 0.08, color)  # fork
    p.line([(0.12, -0.28), (0.26, -0.24)], 0.08, color)  # handlebar
    p.line([(0.2, -0.26), (0.16, -0.1)], 0.08, color)
    p.line([(-0.4, 0.22), (-0.14, 0.1)], 0.08, color)  # swing arm


def _person(p: _Painter, color, c: Point = (0.0, 0.0), s: float = 1.0, stride: float = 1.0) -> None:
    """A walking figure facing right, about 1.1 * s tall, centred on `c`."""

    def q(x: float, y: float) -> Point:
        return (c[0] + x * s, c[1] + y * s)

    w = 0.13 * s
    p.circle(0.1 * s, color, q(0.04, -0.46))
    p.line([q(0.0, -0.3), q(-0.04, 0.06)], w * 1.25, color)  # torso
    p.line([q(0.0, -0.26), q(0.16 * stride, -0.06), q(0.26 * stride, 0.06)], w * 0.8, color)
    p.line([q(0.0, -0.26), q(-0.16 * stride, -0.06), q(-0.2 * stride, 0.06)], w * 0.8, color)
    p.line([q(-0.04, 0.04), q(0.14 * stride, 0.26), q(0.22 * stride, 0.5)], w, color)
    p.line([q(-0.04, 0.04), q(-0.1 * stride, 0.28), q(-0.26 * stride, 0.48)], w, color)


def _horn(p: _Painter, color) -> None:
    p.rect(-0.56, -0.1, -0.3, 0.1, color)
    p.polygon([(-0.32, -0.1), (0.12, -0.34), (0.12, 0.34), (-0.32, 0.1)], color)
    p.ellipse((0.12, 0.0), 0.06, 0.34, color)
    for r in (0.26, 0.42):
        p.line(p.arc_points((0.12, 0.0), r, -38, 38, 12), 0.06, color)


def _flame(p: _Painter, color, bg) -> None:
    """Dangerous goods: a flame."""
    pts = [(0.0, 0.5), (-0.28, 0.44), (-0.4, 0.22), (-0.36, -0.04), (-0.22, -0.22), (-0.2, -0.04),
           (-0.08, -0.2), (-0.02, -0.46), (0.04, -0.62), (0.14, -0.4), (0.26, -0.2), (0.26, -0.02),
           (0.36, -0.12), (0.42, 0.1), (0.38, 0.3), (0.26, 0.44)]  # fmt: skip
    p.polygon(pts, color)
    inner = [(0.0, 0.42), (-0.14, 0.36), (-0.18, 0.2), (-0.08, 0.04), (0.0, -0.14), (0.06, 0.06),
             (0.16, 0.18), (0.14, 0.36)]  # fmt: skip
    p.polygon(inner, bg)


def _crossroads(p: _Painter, color) -> None:
    p.rect(-0.09, -0.42, 0.09, 0.52, color)
    p.rect(-0.42, -0.02, 0.42, 0.16, color)


def _roadworks(p: _Painter, color) -> None:
    """A worker digging beside a heap."""
    p.circle(0.08, color, (-0.18, -0.28))
    p.line([(-0.2, -0.16), (-0.04, 0.1)], 0.12, color)
    p.line([(-0.04, 0.1), (-0.16, 0.28), (-0.24, 0.44)], 0.1, color)
    p.line([(-0.04, 0.1), (0.08, 0.26), (0.04, 0.44)], 0.1, color)
    p.line([(-0.16, -0.1), (0.06, -0.02), (0.14, 0.14)], 0.08, color)
    p.line([(0.2, -0.06), (0.08, 0.3)], 0.05, color)  # shovel handle
    p.polygon([(0.02, 0.3), (0.14, 0.3), (0.1, 0.4)], color)
    p.polygon([(0.12, 0.46), (0.26, 0.22), (0.46, 0.46)], color)  # heap
    p.rect(-0.46, 0.44, 0.48, 0.5, color)


def _merge(p: _Painter, color) -> None:
    """Merging traffic: a straight road joined from the lower left."""
    p.line([(0.1, 0.52), (0.1, -0.44)], 0.16, color)
    p.line([(-0.3, 0.52), (-0.3, 0.26), (0.06, -0.06)], 0.14, color)


def _exclamation(p: _Painter, color) -> None:
    p.polygon([(-0.09, -0.42), (0.09, -0.42), (0.05, 0.2), (-0.05, 0.2)], color)
    p.circle(0.08, color, (0.0, 0.36))


def _rang(p: _Painter, color) -> None:
    """A stroke drawing of the character 让 ("yield")."""
    w = 0.075
    p.circle(0.05, color, (-0.32, -0.34))  # 讠
    p.line([(-0.4, -0.16), (-0.26, -0.16), (-0.26, 0.22), (-0.36, 0.34)], w, color)
    p.line([(0.08, -0.4), (0.08, 0.3)], w, color)  # 上
    p.line([(0.08, -0.08), (0.34, -0.08)], w, color)
    p.line([(-0.12, 0.3), (0.42, 0.3)], w, color)


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


def _round_triangle(p: _Painter, pts: list[Point], fill, r: float) -> None:
    """A triangle with rounded corners: the inset triangle dilated by circles at its corners."""
    inner = _inset_triangle(pts, r)
    p.polygon(inner, fill)
    for a, b in zip(inner, inner[1:] + inner[:1]):
        p.line([a, b], 2 * r, fill)


def _prohibitory(p: _Painter, glyph: Callable[[_Painter], None]) -> None:
    """Red ring, white disk, black glyph, red slash from top left to bottom right."""
    p.circle(_R, RED)
    p.circle(_R - 0.19, WHITE)
    glyph(p)
    d = (_R - 0.15) * math.sqrt(0.5)
    p.line([(-d, -d), (d, d)], 0.15, RED, round_caps=False)


def _limit(p: _Painter, text: str) -> None:
    """Red ring, white disk, black text (speed and weight limits)."""
    p.circle(_R, RED)
    p.circle(_R - 0.19, WHITE)
    n = len(text)
    height = {1: 0.82, 2: 0.74, 3: 0.6}.get(n, 0.52)
    p.text(text, (0.0, 0.02), 1.24 if n < 3 else 1.32, height, BLACK)


def _height_arrows(p: _Painter) -> None:
    for y0, y1 in ((-0.72, -0.44), (0.72, 0.44)):
        p.polygon([(-0.16, y0), (0.16, y0), (0.0, y1)], BLACK)


def _blue_disk(p: _Painter) -> None:
    p.circle(_R, WHITE)
    p.circle(_R - 0.05, BLUE)


def _warning(p: _Painter, glyph: Callable[[_Painter], None]) -> None:
    pts = _triangle_pts(_TRI_SIDE, inverted=False)
    _round_triangle(p, pts, YELLOW, 0.05)
    _round_triangle(p, _inset_triangle(pts, 0.04), BLACK, 0.06)
    _round_triangle(p, _inset_triangle(pts, 0.18), YELLOW, 0.03)
    # The glyph sits on the triangle's centroid, below the canvas centre.
    p.image.alpha_composite(_shifted(p, glyph, (0.0, 0.2), 0.66))


_NUMBERED = re.compile(r"^(pl|pm|ph|il|pr)(\d+(?:\.\d+)?)$")


def _draw_sign(p: _Painter, category: str) -> str:
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
        p.image.alpha_composite(_shifted(p, lambda q: _rang(q, BLACK), (0.0, -0.24), 0.72))
        return "inverted_triangle"
    if name == "ip":
        p.rect(-_R, -_R, _R, _R, WHITE, radius=0.08)
        p.rect(-_R + 0.05, -_R + 0.05, _R - 0.05, _R - 0.05, BLUE, radius=0.06)
        tri = _triangle_pts(1.5, inverted=False)
        p.polygon([(x, y - 0.02) for x, y in tri], WHITE)
        for i in range(4):
            x0 = -0.5 + i * 0.27
            p.polygon([(x0, 0.62), (x0 + 0.14, 0.62), (x0 + 0.08, 0.5), (x0 - 0.04, 0.5)], BLUE)
        _person(p, BLUE, (0.0, 0.1), 0.62, stride=1.0)
        return "square"
    mandatory = {
        "i2": lambda q: _bicycle(q, WHITE, 1.3),
        "i4": lambda q: _car(q, WHITE, BLUE, 1.05),
        "i5": lambda q: _arrow_diag(q, WHITE),
        "io": lambda q: _arrow_up(q, WHITE),
    }
    if name in mandatory:
        _blue_disk(p)
        mandatory[name](p)
        return "circle"
    prohibitory = {
        "p3": lambda q: _bus(q, BLACK, WHITE),
        "p5": lambda q: _arrow_uturn(q, BLACK),
        "p6": lambda q: _bicycle(q, BLACK, 1.15),
        "p10": lambda q: _car(q, BLACK, WHITE),
        "p11": lambda q: _horn(q, BLACK),
        "p12": lambda q: _motorcycle(q, BLACK),
        "p19": lambda q: _arrow_turn(q, BLACK, right=True),
        "p23": lambda q: _arrow_turn(q, BLACK, right=False),
        "p26": lambda q: _truck(q, BLACK, WHITE),
        "p27": lambda q: _flame(q, BLACK, WHITE),
        "po": lambda q: _person(q, BLACK, (0.0, 0.06), 1.05),
    }
    if name in prohibitory:
        _prohibitory(p, prohibitory[name])
        return "circle"
    warning = {
        "w13": lambda q: _crossroads(q, BLACK),
        "w32": lambda q: _roadworks(q, BLACK),
        "w55": lambda q: (
            _person(q, BLACK, (-0.22, 0.02), 0.95),
            _person(q, BLACK, (0.3, 0.14), 0.75),
        ),
        "w57": lambda q: _person(q, BLACK, (0.0, 0.04), 1.05),
        "w59": lambda q: _merge(q, BLACK),
        "wo": lambda q: _exclamation(q, BLACK),
    }
    if name in warning:
        _warning(p, warning[name])
        return "triangle"
    raise KeyError(f"no drawing for sign category {category!r}")


def _shifted(p: _Painter, glyph: Callable, offset: Point, scale: float) -> Image.Image:
    """Draw `glyph` on a separate layer, scaled about the centre and shifted (unit space)."""
    size = p.size
    q = _Painter(size)
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
    painter = _Painter(size * _SUPERSAMPLE)
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
