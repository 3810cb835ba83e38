"""TT100K trees written by tests: annotations.json, a split file and grey JPEGs, and the bad
records every TT100K loader (Detectron2's and MMDetection's) must name or skip (pytest puts tests/
on sys.path; nothing here imports a framework)."""

import json
import os

import numpy as np
from PIL import Image


def box(x0, y0, x1, y1):
    return {"xmin": x0, "ymin": y0, "xmax": x1, "ymax": y1}


def write_tt100k(root, imgs, *, train_ids, types=("pl40", "i2", "zz_other"), size=(64, 48)):
    """Write a TT100K tree: annotations.json, train/ids.txt and one JPEG per record."""
    os.makedirs(os.path.join(root, "train"), exist_ok=True)
    for rec in imgs.values():
        path = os.path.join(root, rec["path"])
        if not os.path.exists(path):
            Image.fromarray(np.full((size[1], size[0], 3), 128, np.uint8)).save(path)
    with open(os.path.join(root, "annotations.json"), "w") as f:
        json.dump({"types": list(types), "imgs": imgs}, f)
    with open(os.path.join(root, "train", "ids.txt"), "w") as f:
        f.write("\n".join(str(i) for i in train_ids) + "\n")
    return os.path.join(root, "annotations.json"), os.path.join(root, "train", "ids.txt")


def record(img_id, objects):
    return {"path": f"train/{img_id}.jpg", "id": img_id, "objects": objects}


BAD_CASES = {
    # case: (records, ids, message fragments, images kept when skipping)
    "missing image": (
        {"1": record(1, []), "2": {"path": "train/nope.jpg", "id": 2, "objects": []}},
        [1, 2],
        ["ids.txt:2", "train/nope.jpg", "does not exist"],
        1,
    ),
    "box outside image": (
        {"1": record(1, [{"category": "i2", "bbox": box(10, 10, 90, 20)}])},
        [1],
        ["imgs['1'].objects[0]", "outside", "64x48"],
        1,
    ),
    "empty box": (
        {"1": record(1, [{"category": "i2", "bbox": box(10, 10, 10, 20)}])},
        [1],
        ["imgs['1'].objects[0]", "zero or negative area"],
        1,
    ),
    "unknown category": (
        {"1": record(1, [{"category": "martian", "bbox": box(1, 1, 5, 5)}])},
        [1],
        ["imgs['1'].objects[0]", "'martian'", "types"],
        1,
    ),
    "unknown image id": (
        {"1": record(1, [])},
        [1, 77],
        ["ids.txt:2", "image id 77", "not in"],
        1,
    ),
    "malformed object": (
        {"1": record(1, [{"category": "i2", "bbox": {"xmin": 1}}])},
        [1],
        ["imgs['1'].objects[0]", "bbox"],
        1,
    ),
}
