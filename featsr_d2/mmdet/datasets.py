"""Tsinghua-Tencent 100K (TT100K) and the synthetic TT100K as an MMDetection dataset.

:class:`FeatSRTT100KDataset` (registered in MMDetection's ``DATASETS``) reads the official layout
(``annotations.json``, ``<split>/ids.txt``, image paths relative to the dataset's folder) with the
one TT100K reader, :func:`featsr_d2.core.tt100k.load_tt100k_split`, which the Detectron2 loader
uses too: the same boxes, classes, strictness and bad-record policy (``on_bad_record``: ``"error"``
raises a :class:`~featsr_d2.core.tt100k.TT100KFormatError` naming the file, the record and the fix;
``"skip"`` skips bad objects and images, counted and logged).

Paths follow MMDetection's convention: ``data_root`` (the folder holding ``annotations.json``, e.g.
``data/tt100k/``), ``ann_file`` and ``split_file`` relative to it, and ``data_prefix=dict(img='')``,
the folder image ``path`` entries are relative to (the data root itself, as in the release).

Each image becomes ``{"img_path", "img_id" (the TT100K id, a string), "height", "width",
"instances": [{"bbox": [x0, y0, x1, y1] clipped to the image, "bbox_label", "ignore_flag": 0}],
"tt100k_objects": [{"category", "bbox": {"xmin", "ymin", "xmax", "ymax"}}]}``; ``tt100k_objects``
is the ground truth as annotated (before clipping), which
:class:`featsr_d2.mmdet.tt100k_metric.FeatSRTT100KMetric` scores when the test pipeline's
``PackDetInputs`` carries it (``meta_keys``), so evaluation scores the dataset as loaded: a skipped
record is never counted as a miss.

Classes (``metainfo["classes"]``): ``class_set="type45"``, the 45 official classes; ``"all"``,
every type of the file's ``types``, in its order (the synthetic ten-class set). A ``metainfo`` that
names classes must name exactly those.

Training reads images after loading; an image whose header read but whose body does not decode
(truncated or corrupt), or whose path is no longer a regular file, raises
:class:`~featsr_d2.core.image_files.UnreadableImageError` naming the file and the fix, or, with
``on_bad_record="skip"`` in training, is skipped (counted and logged; mmengine's dataset draws
another image in its place). At test time it always raises: every test image is scored.
"""

from __future__ import annotations

import os
from typing import Any

from mmdet.datasets import BaseDetDataset
from mmdet.registry import DATASETS
from mmengine.logging import MMLogger
from mmengine.utils import is_abs

from featsr_d2.core.image_files import (
    NotARegularFileError,
    UnreadableImageError,
    image_decodes,
    require_regular_file,
)
from featsr_d2.core.tt100k import (
    BOX_KEYS,
    ON_BAD_RECORD_CHOICES,
    class_names,
    load_tt100k_split,
    read_annotations,
)
from featsr_d2.core.tt100k_categories import CLASS_SETS, TYPE45

__all__ = ["FeatSRTT100KDataset"]

# The dataset setting that skips bad records, named by the reader's errors.
SKIP_SETTING = "on_bad_record='skip' in the dataset's config"


@DATASETS.register_module()
class FeatSRTT100KDataset(BaseDetDataset):
    """A TT100K-format dataset split; see the module docstring.

    Args:
        ann_file: the dataset's ``annotations.json``, relative to ``data_root``.
        split_file: the split's ``ids.txt`` (``"train/ids.txt"``, ``"test/ids.txt"``), relative to
            ``data_root``.
        class_set: ``"type45"`` or ``"all"``.
        on_bad_record: ``"error"`` or ``"skip"``.
        kwargs: :class:`mmdet.datasets.BaseDetDataset`'s (``data_root``, ``data_prefix``,
            ``filter_cfg`` with ``filter_empty_gt`` and ``min_size`` (training only), ``pipeline``,
            ``test_mode``, ...).
    """

    def __init__(
        self,
        *,
        ann_file: str = "annotations.json",
        split_file: str,
        class_set: str = "type45",
        on_bad_record: str = "error",
        **kwargs,
    ) -> None:
        if class_set not in CLASS_SETS:
            raise ValueError(f"class_set must be one of {CLASS_SETS}, got {class_set!r}")
        if on_bad_record not in ON_BAD_RECORD_CHOICES:
            raise ValueError(
                f"on_bad_record must be one of {ON_BAD_RECORD_CHOICES}, got {on_bad_record!r}"
            )
        self.split_file = split_file
        self.class_set = class_set
        self.on_bad_record = on_bad_record
        self.skipped_images = 0  # undecodable images skipped in training, in this process
        super().__init__(ann_file=ann_file, **kwargs)

    def _join_prefix(self) -> None:
        super()._join_prefix()
        if self.split_file and not is_abs(self.split_file) and self.data_root:
            self.split_file = os.path.join(self.data_root, self.split_file)

    def _classes(self) -> list[str]:
        """The class set's names, checked against ``metainfo``'s ``classes`` when it has some."""
        if self.class_set == "type45":
            classes = list(TYPE45)
        else:  # the file's types, read (and checked) before its records
            types = read_annotations(self.ann_file, self._missing_hint()).get("types", [])
            classes = class_names(self.class_set, types)
        given = self._metainfo.get("classes")
        if given is not None and list(given) != classes:
            raise ValueError(
                f"metainfo classes {list(given)[:6]}... do not match the class set "
                f"{self.class_set!r} of {self.ann_file} ({len(classes)} classes: "
                f"{classes[:6]}...). Drop metainfo['classes'] or list the class set's classes "
                "in its order (class_set='all' follows the file's 'types')."
            )
        return classes

    def _missing_hint(self) -> str:
        return (
            f"Set the dataset's data_root to the folder holding {os.path.basename(self.ann_file)} "
            f"(now {self.data_root!r})."
        )

    def load_data_list(self) -> list[dict[str, Any]]:
        classes = self._classes()
        self._metainfo["classes"] = tuple(classes)
        records = load_tt100k_split(
            self.ann_file,
            self.split_file,
            self.data_prefix.get("img") or self.data_prefix.get("img_path") or self.data_root,
            class_set=self.class_set,
            on_bad_record=self.on_bad_record,
            split_name=self.split_file,
            skip_setting=SKIP_SETTING,
            missing_hint=self._missing_hint(),
            log=MMLogger.get_current_instance(),
        )
        return [
            {
                "img_path": r["file_name"],
                "img_id": r["img_id"],
                "height": r["height"],
                "width": r["width"],
                "instances": [
                    {"bbox": o["bbox"], "bbox_label": o["category_id"], "ignore_flag": 0}
                    for o in r["objects"]
                ],
                "tt100k_objects": [
                    {"category": o["category"], "bbox": dict(zip(BOX_KEYS, o["tt100k_bbox"]))}
                    for o in r["objects"]
                ],
            }
            for r in records
        ]

    def filter_data(self) -> list[dict[str, Any]]:
        """In training, ``filter_cfg``'s ``filter_empty_gt`` drops images without objects and its
        ``min_size`` images whose shorter side is smaller; at test time every image is kept."""
        if self.test_mode or not self.filter_cfg:
            return self.data_list
        filter_empty_gt = self.filter_cfg.get("filter_empty_gt", False)
        min_size = self.filter_cfg.get("min_size", 0)
        return [
            d
            for d in self.data_list
            if not (filter_empty_gt and not d["instances"])
            and min(d["width"], d["height"]) >= min_size
        ]

    def prepare_data(self, idx: int) -> Any:
        """The pipeline's output for image ``idx``; an unreadable image raises, or is skipped
        (None) in training under ``on_bad_record="skip"`` (see the module docstring)."""
        path = self.get_data_info(idx)["img_path"]
        try:
            require_regular_file(path)  # before the pipeline opens it: a FIFO would block
            return super().prepare_data(idx)
        except Exception as e:
            if isinstance(e, NotARegularFileError):
                cause = "it " + str(e).removeprefix(f"{path} ")
            elif isinstance(e, FileNotFoundError) and not os.path.exists(path):
                cause = "it no longer exists"
            elif not image_decodes(path):
                cause = (
                    f"the image cannot be decoded ({type(e).__name__}: {e}); its header reads, "
                    "so the file is probably truncated or corrupt"
                )
            else:
                raise  # the image decodes: not the image's fault
            if self.on_bad_record == "error" or self.test_mode:
                fix = (
                    "Fix the image (every test image is scored)."
                    if self.test_mode
                    else f"Fix the image, or set {SKIP_SETTING} to skip such images with a count."
                )
                raise UnreadableImageError(f"{path}: {cause}. {fix}") from e
            self.skipped_images += 1
            MMLogger.get_current_instance().warning(
                "Skipped %s: %s. %d image(s) skipped so far in this process.",
                path,
                cause,
                self.skipped_images,
            )
            return None
