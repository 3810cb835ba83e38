"""The synthetic TT100K sign designs: every class drawable, distinct and deterministic."""

import itertools

import cv2
import numpy as np

from featsr_d2.core.synthetic.signs import SIGN_CATEGORIES, get_template, render_sign
from featsr_d2.core.tt100k_categories import TYPE45


def test_every_category_drawable_and_distinct():
    assert set(TYPE45) <= set(SIGN_CATEGORIES)
    small = {}
    for c in TYPE45:
        t = get_template(c)
        alpha = t.rgba[..., 3]
        assert t.rgba.shape[2] == 4 and t.rgba.dtype == np.uint8
        assert 0.4 < (alpha > 127).mean() < 0.95  # a solid silhouette inside the canvas
        assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
        small[c] = cv2.resize(t.rgba, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    for a, b in itertools.combinations(TYPE45, 2):
        assert np.abs(small[a] - small[b]).mean() > 1.0, (a, b)
    # Rendering is deterministic and other numbers of the numbered families are drawable too.
    assert np.array_equal(render_sign("pl40", 64).rgba, render_sign("pl40", 64).rgba)
    assert not np.array_equal(render_sign("pl15", 64).rgba, render_sign("pl40", 64).rgba)
