"""Pictograms of the synthetic traffic signs (arrows, vehicles, people, symbols), drawn with a
:class:`~featsr_d2.core.synthetic.painter.Painter` in unit space around the sign centre, fitting
roughly inside radius 0.6. Colours are arguments: the sign family chooses them.
"""

from __future__ import annotations

import math

import numpy as np

from featsr_d2.core.synthetic.painter import Painter, Point

__all__ = [
    "arrow_diag",
    "arrow_turn",
    "arrow_up",
    "arrow_uturn",
    "bicycle",
    "bus",
    "car",
    "crossroads",
    "exclamation",
    "flame",
    "horn",
    "merge",
    "motorcycle",
    "person",
    "rang",
    "roadworks",
    "truck",
]


def arrow_up(p: Painter, color) -> None:
    p.rect(-0.12, -0.12, 0.12, 0.62, color)
    p.polygon([(-0.38, -0.08), (0.38, -0.08), (0.0, -0.62)], color)


def arrow_diag(p: Painter, color) -> None:
    """Keep-right arrow: the up arrow turned by 135 degrees to point down to the right."""
    c, s = -math.sqrt(0.5), math.sqrt(0.5)

    def rot(x: float, y: float) -> Point:
        return (x * c - y * s, x * s + y * c)

    p.polygon([rot(*q) for q in [(-0.12, -0.1), (0.12, -0.1), (0.12, 0.6), (-0.12, 0.6)]], color)
    p.polygon([rot(*q) for q in [(-0.38, -0.06), (0.38, -0.06), (0.0, -0.6)]], color)


def arrow_turn(p: Painter, color, right: bool) -> None:
    """An arrow going up then turning 90 degrees to the right (mirrored for left)."""
    m = 1.0 if right else -1.0
    r, x0, cy = 0.28, -0.26, 0.0
    cx = x0 + r
    pts = [(x0, 0.62), (x0, cy)] + p.arc_points((cx, cy), r, 180.0, 270.0, 20)
    pts.append((cx + 0.14, cy - r))
    p.line([(m * x, y) for x, y in pts], 0.22, color, round_caps=False)
    head = [(cx + 0.12, cy - r - 0.3), (cx + 0.12, cy - r + 0.3), (cx + 0.56, cy - r)]
    p.polygon([(m * x, y) for x, y in head], color)


def arrow_uturn(p: Painter, color) -> None:
    r = 0.24
    cx, cy = 0.0, -0.12
    pts = [(r, 0.62), (r, cy)] + p.arc_points((cx, cy), r, 0.0, -180.0, 24) + [(-r, 0.12)]
    p.line(pts, 0.2, color, round_caps=False)
    p.polygon([(-r - 0.27, 0.06), (-r + 0.27, 0.06), (-r, 0.48)], color)


def car(p: Painter, color, bg, s: float = 1.0) -> None:
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


def truck(p: Painter, color, bg) -> None:
    """Side view of a lorry facing left: cab and a tall cargo box, three wheels."""
    p.polygon([(-0.66, 0.18), (-0.66, -0.06), (-0.56, -0.26), (-0.34, -0.26), (-0.34, 0.18)], color)
    p.polygon([(-0.6, -0.06), (-0.53, -0.2), (-0.42, -0.2), (-0.42, -0.06)], bg)
    p.rect(-0.3, -0.44, 0.68, 0.12, color)
    p.rect(-0.66, 0.1, 0.68, 0.2, color)
    for x in (-0.46, 0.28, 0.5):
        p.circle(0.14, bg, (x, 0.24))
        p.circle(0.105, color, (x, 0.24))


def bus(p: Painter, color, bg) -> None:
    """Side view of a coach with a row of windows."""
    p.rect(-0.66, -0.32, 0.66, 0.18, color, radius=0.08)
    for x in np.linspace(-0.5, 0.42, 5):
        p.rect(x, -0.22, x + 0.14, -0.04, bg)
    p.rect(-0.62, -0.22, -0.56, 0.08, bg)
    for x in (-0.36, 0.38):
        p.circle(0.15, bg, (x, 0.2))
        p.circle(0.11, color, (x, 0.2))


def bicycle(p: Painter, color, s: float = 1.0) -> None:
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


def motorcycle(p: Painter, color) -> None:
    for x in (-0.4, 0.4):
        p.ring(0.22, 0.09, color, (x, 0.22))
    p.polygon([(-0.36, 0.04), (-0.14, -0.12), (0.14, -0.14), (0.22, 0.06), (-0.1, 0.14)], color)
    p.rect(-0.42, -0.16, -0.08, -0.08, color, radius=0.03)  # seat
    p.line([(0.16, -0.1), (0.4, 0.22)], 0.08, color)  # fork
    p.line([(0.12, -0.28), (0.26, -0.24)], 0.08, color)  # handlebar
    p.line([(0.2, -0.26), (0.16, -0.1)], 0.08, color)
    p.line([(-0.4, 0.22), (-0.14, 0.1)], 0.08, color)  # swing arm


def person(p: Painter, color, c: Point = (0.0, 0.0), s: float = 1.0, stride: float = 1.0) -> None:
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


def horn(p: Painter, color) -> None:
    p.rect(-0.56, -0.1, -0.3, 0.1, color)
    p.polygon([(-0.32, -0.1), (0.12, -0.34), (0.12, 0.34), (-0.32, 0.1)], color)
    p.ellipse((0.12, 0.0), 0.06, 0.34, color)
    for r in (0.26, 0.42):
        p.line(p.arc_points((0.12, 0.0), r, -38, 38, 12), 0.06, color)


def flame(p: Painter, color, bg) -> None:
    """Dangerous goods: a flame."""
    pts = [(0.0, 0.5), (-0.28, 0.44), (-0.4, 0.22), (-0.36, -0.04), (-0.22, -0.22), (-0.2, -0.04),
           (-0.08, -0.2), (-0.02, -0.46), (0.04, -0.62), (0.14, -0.4), (0.26, -0.2), (0.26, -0.02),
           (0.36, -0.12), (0.42, 0.1), (0.38, 0.3), (0.26, 0.44)]  # fmt: skip
    p.polygon(pts, color)
    inner = [(0.0, 0.42), (-0.14, 0.36), (-0.18, 0.2), (-0.08, 0.04), (0.0, -0.14), (0.06, 0.06),
             (0.16, 0.18), (0.14, 0.36)]  # fmt: skip
    p.polygon(inner, bg)


def crossroads(p: Painter, color) -> None:
    p.rect(-0.09, -0.42, 0.09, 0.52, color)
    p.rect(-0.42, -0.02, 0.42, 0.16, color)


def roadworks(p: Painter, color) -> None:
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


def merge(p: Painter, color) -> None:
    """Merging traffic: a straight road joined from the lower left."""
    p.line([(0.1, 0.52), (0.1, -0.44)], 0.16, color)
    p.line([(-0.3, 0.52), (-0.3, 0.26), (0.06, -0.06)], 0.14, color)


def exclamation(p: Painter, color) -> None:
    p.polygon([(-0.09, -0.42), (0.09, -0.42), (0.05, 0.2), (-0.05, 0.2)], color)
    p.circle(0.08, color, (0.0, 0.36))


def rang(p: Painter, color) -> None:
    """A stroke drawing of the character 让 ("yield")."""
    w = 0.075
    p.circle(0.05, color, (-0.32, -0.34))  # 讠
    p.line([(-0.4, -0.16), (-0.26, -0.16), (-0.26, 0.22), (-0.36, 0.34)], w, color)
    p.line([(0.08, -0.4), (0.08, 0.3)], w, color)  # 上
    p.line([(0.08, -0.08), (0.34, -0.08)], w, color)
    p.line([(-0.12, 0.3), (0.42, 0.3)], w, color)
