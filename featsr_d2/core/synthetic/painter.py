"""Pillow drawing in unit coordinates, the primitives every synthetic sign is drawn with.

x, y run over [-1, 1] across the canvas, y pointing down; widths are unit lengths too. Text uses
DejaVu Sans Bold (from matplotlib's data) or, without it, OpenCV's Hershey strokes.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["Painter", "Point"]

Point = tuple[float, float]


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


class Painter:
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
