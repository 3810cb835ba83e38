"""Tsinghua-Tencent 100K (TT100K) in its official layout, as Detectron2 datasets.

The files are read by :mod:`featsr_d2.core.tt100k`, the one reader (its docstring gives the layout,
the strictness and the bad-record policy); this module turns a split's records into Detectron2
dicts with ``XYXY_ABS`` float boxes (:func:`load_tt100k_json`) and registers datasets under names
(:func:`register_tt100k_instances`), their bad-record policy coming from
``DATASETS.TT100K.ON_BAD_RECORD`` (:func:`set_bad_record_policy`).
"""

import logging
import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode

from featsr_d2.core.tt100k import (
    ON_BAD_RECORD_CHOICES,
    TT100KFormatError,
    class_names,
    image_id_value,
    load_tt100k_split,
    read_annotations,
)
from featsr_d2.core.tt100k_categories import CLASS_SETS, TYPE45

__all__ = [
    "ON_BAD_RECORD_CHOICES",
    "TT100KFormatError",
    "load_tt100k_json",
    "register_tt100k_instances",
    "set_bad_record_policy",
]

logger = logging.getLogger(__name__)

# The config key that skips bad records, named by the loader's errors.
SKIP_SETTING = "DATASETS.TT100K.ON_BAD_RECORD skip"
MISSING_HINT = (
    "Point the dataset at the folder holding annotations.json (for the builtin names: "
    "$DETECTRON2_DATASETS/tt100k)."
)


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
        on_bad_record: ``"error"`` or ``"skip"`` (see :mod:`featsr_d2.core.tt100k`).
        split_name: used in log messages.
    """
    records = load_tt100k_split(
        json_file,
        ids_file,
        image_root,
        class_set=class_set,
        on_bad_record=on_bad_record,
        split_name=split_name,
        skip_setting=SKIP_SETTING,
        missing_hint=MISSING_HINT,
        log=logger,
    )
    return [
        {
            "file_name": r["file_name"],
            "height": r["height"],
            "width": r["width"],
            "image_id": image_id_value(r["img_id"]),
            "annotations": [
                {
                    "bbox": o["bbox"],
                    "bbox_mode": BoxMode.XYXY_ABS,
                    "category_id": o["category_id"],
                    # The box as annotated (before clipping): what the official protocol scores.
                    "tt100k_bbox": o["tt100k_bbox"],
                }
                for o in r["objects"]
            ],
        }
        for r in records
    ]


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
            meta.set(
                thing_classes=class_names("all", read_annotations(json_file, MISSING_HINT)["types"])
            )
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
