"""The synthetic TT100K layout: sign sizes follow TT100K's mix, boxes stay inside and apart."""

import itertools

import numpy as np

from featsr_d2.core.synthetic.layout import (
    MIN_LONG_SIDE,
    SIGNS_PER_IMAGE,
    _overlaps,
    max_long_side,
    sample_layout,
)
from featsr_d2.core.tt100k_categories import SIZE_BINS, TYPE45


def test_sizes_follow_tt100k_mix():
    rng = np.random.default_rng(0)
    sides, empty, counts = [], 0, []
    num_images = 0
    while len(sides) < 2000:
        layout = sample_layout(rng, 320, TYPE45)
        num_images += 1
        empty += not layout
        counts.append(len(layout))
        sides += [p.long_side for p in layout]
    sides = np.array(sides)
    frac = {
        name: np.mean((sides >= SIZE_BINS[name][0]) & (sides < SIZE_BINS[name][1]))
        for name in ("small", "medium", "large")
    }
    assert abs(frac["small"] - 0.42) < 0.035
    assert abs(frac["medium"] - 0.50) < 0.035
    assert abs(frac["large"] - 0.08) < 0.02
    assert sides.min() >= MIN_LONG_SIDE - 1e-6 and sides.max() <= max_long_side(320) + 1e-6
    assert 0.01 < empty / num_images < 0.12
    assert max(counts) <= SIGNS_PER_IMAGE[1]
    assert np.mean([c for c in counts if c]) > 3.0


def test_layout_boxes_inside_and_barely_overlapping():
    rng = np.random.default_rng(5)
    for _ in range(100):
        layout = sample_layout(rng, 128, TYPE45)
        for p in layout:
            assert 0 <= p.box[0] < p.box[2] <= 128 and 0 <= p.box[1] < p.box[3] <= 128
        for p, q in itertools.combinations(layout, 2):
            assert not _overlaps(p.box, q.box)
