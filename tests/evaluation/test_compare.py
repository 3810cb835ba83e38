"""Side-by-side comparison of detectors: tables, small-object differences and the picture."""

import cv2
import numpy as np
import pytest

from featsr_d2.evaluation.compare import (
    match_all,
    save_sign_comparison_png,
    small_object_differences,
    small_sign_differences,
)


def _box(x0, y0, x1, y1):
    return {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}


GT = {
    "types": ["pl40", "i2"],
    "imgs": {
        "1": {
            "path": "1.png",
            "objects": [
                {"category": "pl40", "bbox": _box(10, 10, 30, 30)},  # small
                {"category": "i2", "bbox": _box(50, 50, 110, 110)},  # medium
            ],
        },
        "2": {"path": "2.png", "objects": [{"category": "pl40", "bbox": _box(5, 5, 20, 20)}]},
    },
}


def _det(category, box, score):
    return {"category": category, "bbox": _box(*box), "score": score}


# "base" finds the medium sign of image 1 only; "featsr" finds both small signs and the medium one.
RESULTS = {
    "base": {"imgs": {"1": {"objects": [_det("i2", (50, 50, 110, 110), 0.9)]}}},
    "featsr": {
        "imgs": {
            "1": {
                "objects": [
                    _det("pl40", (10, 10, 30, 30), 0.8),
                    _det("i2", (50, 50, 110, 110), 0.9),
                ]
            },
            "2": {"objects": [_det("pl40", (5, 5, 20, 20), 0.7), _det("i2", (60, 5, 70, 15), 0.9)]},
        }
    },
}


def test_small_object_differences_count_both_ways():
    matches = match_all(GT, RESULTS, min_score=0.5)
    assert small_object_differences(matches["base"], matches["featsr"]) == [
        ("1", 1, 0),
        ("2", 1, 0),
    ]
    assert small_object_differences(matches["featsr"], matches["base"]) == [
        ("1", 0, 1),
        ("2", 0, 1),
    ]
    assert small_object_differences(matches["base"], matches["base"]) == []


def test_small_sign_differences_list_each_sign_one_model_misses():
    matches = match_all(GT, RESULTS, min_score=0.5)
    # Image 1's small sign (index 0) and image 2's: found by featsr only; the medium one is equal.
    gained = small_sign_differences(matches["base"], matches["featsr"])
    assert gained == [("1", 0, True), ("2", 0, True)]
    lost = small_sign_differences(matches["featsr"], matches["base"])
    assert lost == [("1", 0, False), ("2", 0, False)]
    assert small_sign_differences(matches["base"], matches["base"]) == []


def test_sign_picture_has_a_zoomed_cell_per_model_and_sign(tmp_path):
    files = {}
    for img_id in GT["imgs"]:
        files[img_id] = str(tmp_path / f"{img_id}.png")
        image = np.full((120, 130, 3), 90, np.uint8)
        cv2.rectangle(image, (10, 10), (30, 30), (0, 0, 255), -1)  # the small sign of image 1
        cv2.imwrite(files[img_id], image)
    matches = match_all(GT, RESULTS, min_score=0.5)
    signs = small_sign_differences(matches["base"], matches["featsr"])
    path = tmp_path / "out" / "cmp.png"
    save_sign_comparison_png(str(path), matches, files, signs, title="t", cell=100,
                             pairs_per_row=2)  # fmt: skip
    picture = cv2.imread(str(path))
    # One row of two signs x two models, each cell 100 px plus its two captions (22 px each).
    assert picture.shape[0] == 22 + 6 + (22 + 100 + 22) + 6
    assert picture.shape[1] == 4 * (100 + 6) + 6
    # The first cell is the base's view of image 1's sign: the window (3 x 20 px around it) is
    # enlarged 100 / 60 times, so the red sign fills the middle third of the cell.
    cell = picture[22 + 6 + 22 : 22 + 6 + 22 + 100, 6 : 6 + 100]
    assert (cell[50, 50] == (0, 0, 255)).all()
    assert (cell[5, 5] != (0, 0, 255)).any()
    with pytest.raises(ValueError, match="at least one sign"):
        save_sign_comparison_png(str(path), matches, files, [])
    with pytest.raises(FileNotFoundError, match="image id 2"):
        save_sign_comparison_png(str(path), matches, {**files, "2": str(tmp_path / "no.png")},
                                 [("2", 0, True)])  # fmt: skip
