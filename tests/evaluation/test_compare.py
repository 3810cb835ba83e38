"""Side-by-side comparison of detectors: tables, small-object differences and the picture."""

import cv2
import numpy as np
import pytest

from featsr_d2.evaluation.compare import (
    match_all,
    save_comparison_png,
    small_object_differences,
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


def test_comparison_picture_has_a_cell_per_model_and_image(tmp_path):
    files = {}
    for img_id in GT["imgs"]:
        files[img_id] = str(tmp_path / f"{img_id}.png")
        cv2.imwrite(files[img_id], np.full((120, 130, 3), 90, np.uint8))
    matches = match_all(GT, RESULTS, min_score=0.5)
    path = tmp_path / "out" / "cmp.png"
    save_comparison_png(str(path), matches, files, ["1", "2"], title="t")
    picture = cv2.imread(str(path))
    assert picture is not None
    # Two columns (models) by two rows (images), each cell at least 320 px on its short side.
    assert picture.shape[1] >= 2 * 320 and picture.shape[0] >= 2 * 320
    with pytest.raises(ValueError, match="at least one image"):
        save_comparison_png(str(path), matches, files, [])
    with pytest.raises(FileNotFoundError, match="image id 2"):
        save_comparison_png(str(path), matches, {**files, "2": str(tmp_path / "no.png")}, ["2"])
