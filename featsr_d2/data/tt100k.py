"""Tsinghua-Tencent 100K (TT100K) in its official layout, as Detectron2 datasets.

The official release (and :mod:`featsr_d2.data.synthetic`) lays a dataset out as::

    ROOT/annotations.json   {"types": [...], "imgs": {"<id>": {"path": "train/<id>.jpg", "id": <id>,
                              "objects": [{"category": "pl40",
                                           "bbox": {"xmin", "ymin", "xmax", "ymax"},
                                           optional "ellipse_org" / "polygon"}]}}}
    ROOT/train/ids.txt      one image id per line (likewise test/ids.txt)
    ROOT/train/<id>.jpg     image paths are relative to ROOT

:func:`load_tt100k_json` turns a split into Detectron2 dicts with ``XYXY_ABS`` float boxes.

Bad input never reaches training as a crash: every problem is reported as a
:class:`TT100KFormatError` naming the file, the record and the fix, or, with
``on_bad_record="skip"``, counted, logged and skipped. A bad object skips that object; a bad image
(unknown id, missing or unreadable file) skips the image. Boxes may overhang the image border by up
to ``BORDER_TOLERANCE`` pixels (annotation rounding) and are clipped; further out they are bad.
"""

import json
import logging
import os
from collections import Counter

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image

from featsr_d2.data.tt100k_categories import CLASS_SETS, TYPE45

logger = logging.getLogger(__name__)

ON_BAD_RECORD_CHOICES = ("error", "skip")
# How far (pixels) a box may overhang the image before it counts as outside it.
BORDER_TOLERANCE = 1.0


class TT100KFormatError(ValueError):
    """A TT100K annotation file, split file or image that cannot be used as it is."""


class _BadRecords:
    """Raises on the first bad record, or counts and logs them, per the ``on_bad_record`` policy."""

    def __init__(self, policy: str, split_name: str):
        if policy not in ON_BAD_RECORD_CHOICES:
            raise ValueError(
                f"on_bad_record must be one of {ON_BAD_RECORD_CHOICES}, got {policy!r}"
            )
        self.policy = policy
        self.split_name = split_name
        self.counts: Counter = Counter()
        self.examples: list[str] = []

    def __call__(self, reason: str, message: str) -> None:
        if self.policy == "error":
            raise TT100KFormatError(
                f"{message}\nFix the record, or set DATASETS.TT100K.ON_BAD_RECORD skip "
                "to skip bad records with a logged count."
            )
        self.counts[reason] += 1
        if len(self.examples) < 5:
            self.examples.append(message)

    def report(self) -> None:
        if not self.counts:
            return
        summary = ", ".join(f"{n} {reason}" for reason, n in sorted(self.counts.items()))
        logger.warning(
            "TT100K %s: skipped bad records (%s). First ones:\n  %s",
            self.split_name,
            summary,
            "\n  ".join(self.examples),
        )


def read_annotations(json_file: str) -> dict:
    """Read and check the top level of a TT100K ``annotations.json``."""
    try:
        with open(json_file) as f:
            annos = json.load(f)
    except FileNotFoundError:
        raise TT100KFormatError(
            f"{json_file}: annotation file not found. Point the dataset at the folder holding "
            "annotations.json (for the builtin names: $DETECTRON2_DATASETS/tt100k)."
        ) from None
    except json.JSONDecodeError as e:
        raise TT100KFormatError(
            f"{json_file}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}). "
            "Re-download or re-export the annotation file."
        ) from None
    if not isinstance(annos, dict) or not isinstance(annos.get("imgs"), dict):
        raise TT100KFormatError(
            f"{json_file}: expected an object with an 'imgs' mapping of image id to record "
            "(the TT100K annotations.json format)."
        )
    types = annos.get("types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
        raise TT100KFormatError(f"{json_file}: 'types' must be a list of category names.")
    return annos


def read_ids(ids_file: str) -> list[tuple[int, str]]:
    """The ``(line number, image id)`` pairs of a split file, blank lines skipped."""
    try:
        with open(ids_file) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        raise TT100KFormatError(
            f"{ids_file}: split file not found. A TT100K root holds train/ids.txt and test/ids.txt."
        ) from None
    return [(n, line.strip()) for n, line in enumerate(lines, 1) if line.strip()]


def class_names(class_set: str, types: list[str]) -> list[str]:
    """The contiguous class list of a class set: the official 45, or every type in the file."""
    if class_set == "type45":
        return list(TYPE45)
    if class_set == "all":
        return list(types)
    raise ValueError(f"class_set must be one of {CLASS_SETS}, got {class_set!r}")


def _image_size(path: str) -> tuple[int, int]:
    with Image.open(path) as im:  # reads the header only
        return im.size


def _parse_box(obj: dict) -> tuple[float, float, float, float]:
    box = obj["bbox"]
    return tuple(float(box[k]) for k in ("xmin", "ymin", "xmax", "ymax"))


def load_tt100k_json(
    json_file: str,
    ids_file: str,
    image_root: str,
    *,
    class_set: str = "type45",
    on_bad_record: str = "error",
    split_name: str = "",
) -> list[dict]:
    """Load one split of a TT100K-format dataset as Detectron2 dicts.

    Args:
        json_file: the dataset's ``annotations.json``.
        ids_file: the split's ``ids.txt``.
        image_root: the folder image ``path`` entries are relative to.
        class_set: ``"type45"`` keeps the official 45 evaluation classes (objects of other known
            types are left out, as in the TT100K and FeatSR training setups); ``"all"`` keeps
            every type.
        on_bad_record: ``"error"`` or ``"skip"`` (see the module docstring).
        split_name: used in log messages.
    """
    bad = _BadRecords(on_bad_record, split_name or ids_file)
    annos = read_annotations(json_file)
    known_types = set(annos.get("types", []))
    classes = class_names(class_set, annos.get("types", []))
    class_id = {name: i for i, name in enumerate(classes)}

    dataset_dicts = []
    for line_no, img_id in read_ids(ids_file):
        where = f"{ids_file}:{line_no}: image id {img_id}"
        rec = annos["imgs"].get(img_id)
        if rec is None:
            bad("unknown image id", f"{where} is not in {json_file} 'imgs'.")
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("path"), str):
            bad("malformed image record", f"{json_file}: imgs[{img_id!r}] has no 'path' string.")
            continue
        file_name = os.path.join(image_root, rec["path"])
        try:
            width, height = _image_size(file_name)
        except FileNotFoundError:
            bad("missing image", f"{where}: image file {file_name} does not exist.")
            continue
        except OSError as e:
            bad("unreadable image", f"{where}: image file {file_name} cannot be read ({e}).")
            continue

        objs = []
        for k, obj in enumerate(rec.get("objects", [])):
            rec_where = f"{json_file}: imgs[{img_id!r}].objects[{k}]"
            try:
                category = obj["category"]
                x0, y0, x1, y1 = _parse_box(obj)
            except (KeyError, TypeError, ValueError) as e:
                bad("malformed object", f"{rec_where} lacks a category or a numeric bbox ({e!r}).")
                continue
            if category not in known_types and category not in class_id:
                bad(
                    "unknown category",
                    f"{rec_where}: category {category!r} is not in the file's 'types' list.",
                )
                continue
            if category not in class_id:
                continue  # a known type outside the chosen class set
            if not (x1 > x0 and y1 > y0):
                bad("empty box", f"{rec_where}: box {(x0, y0, x1, y1)} has zero or negative area.")
                continue
            tol = BORDER_TOLERANCE
            if x0 < -tol or y0 < -tol or x1 > width + tol or y1 > height + tol:
                bad(
                    "box outside image",
                    f"{rec_where}: box {(x0, y0, x1, y1)} lies outside the {width}x{height} "
                    f"image {file_name}.",
                )
                continue
            box = [max(x0, 0.0), max(y0, 0.0), min(x1, float(width)), min(y1, float(height))]
            objs.append(
                {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": class_id[category]}
            )
        dataset_dicts.append(
            {
                "file_name": file_name,
                "height": height,
                "width": width,
                "image_id": int(img_id) if img_id.isdigit() else img_id,
                "annotations": objs,
            }
        )
    bad.report()
    logger.info(
        "Loaded %d images with %d objects from %s (%s)",
        len(dataset_dicts),
        sum(len(d["annotations"]) for d in dataset_dicts),
        ids_file,
        class_set,
    )
    return dataset_dicts


def register_tt100k_instances(
    name: str, root: str, split: str, *, class_set: str = "type45", json_file: str | None = None
) -> None:
    """Register split ``split`` ("train", "test", ...) of the TT100K-format dataset under ``root``.

    The bad-record policy is read from the metadata key ``on_bad_record`` when the dataset is loaded
    (:func:`set_bad_record_policy`; ``"error"`` when unset).
    """
    if class_set not in CLASS_SETS:
        raise ValueError(f"class_set must be one of {CLASS_SETS}, got {class_set!r}")
    json_file = json_file or os.path.join(root, "annotations.json")
    ids_file = os.path.join(root, split, "ids.txt")

    def load():
        meta = MetadataCatalog.get(name)
        dicts = load_tt100k_json(
            json_file,
            ids_file,
            root,
            class_set=class_set,
            on_bad_record=meta.get("on_bad_record", "error"),
            split_name=name,
        )
        if class_set == "all" and not hasattr(meta, "thing_classes"):
            meta.set(thing_classes=class_names("all", read_annotations(json_file)["types"]))
        return dicts

    DatasetCatalog.register(name, load)
    meta = dict(json_file=json_file, ids_file=ids_file, image_root=root, evaluator_type="tt100k")
    if class_set == "type45":
        meta["thing_classes"] = list(TYPE45)
    MetadataCatalog.get(name).set(class_set=class_set, **meta)


def set_bad_record_policy(dataset_names, policy: str) -> None:
    """Apply ``DATASETS.TT100K.ON_BAD_RECORD`` to the TT100K datasets among ``dataset_names``."""
    if policy not in ON_BAD_RECORD_CHOICES:
        raise ValueError(
            f"DATASETS.TT100K.ON_BAD_RECORD must be one of {ON_BAD_RECORD_CHOICES}, got {policy!r}"
        )
    for name in dataset_names:
        meta = MetadataCatalog.get(name)
        if meta.get("evaluator_type") != "tt100k":
            continue
        current = meta.get("on_bad_record")
        if current is None:
            meta.set(on_bad_record=policy)
        elif current != policy:
            raise ValueError(
                f"Dataset {name} already uses on_bad_record={current!r}; one process cannot "
                f"load it with {policy!r} too."
            )
