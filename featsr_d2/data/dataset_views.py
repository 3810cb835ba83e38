"""Registered views of a registered dataset: its first images, or its COCO-format conversion, each
with the original's metadata, so that every evaluator scores exactly the images evaluated."""

from __future__ import annotations

import os

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets.coco import convert_to_coco_json

__all__ = ["coco_view", "first_images"]


def first_images(dataset_name: str, num_images: int) -> str:
    """The name of a registered dataset holding the first ``num_images`` images of
    ``dataset_name`` with its metadata (registered on first use), so that every evaluator scores
    exactly the images evaluated."""
    name = f"{dataset_name}__first{num_images}"
    if name not in DatasetCatalog.list():
        # Loading first: a class set read from the annotations ("all") is in the metadata only then.
        images = DatasetCatalog.get(dataset_name)[:num_images]
        DatasetCatalog.register(name, lambda: list(images))
        meta = MetadataCatalog.get(dataset_name).as_dict()
        MetadataCatalog.get(name).set(**{k: v for k, v in meta.items() if k != "name"})
    return name


def coco_view(dataset_name: str, output_dir: str) -> str:
    """The name of a registered copy of ``dataset_name`` whose ``json_file`` is its COCO-format
    conversion (written into ``output_dir``), for COCO AP on datasets of other formats (TT100K's
    ``json_file`` is not COCO's)."""
    meta = MetadataCatalog.get(dataset_name)
    if meta.get("evaluator_type") == "coco":
        return dataset_name
    name = f"{dataset_name}__coco"
    if name not in DatasetCatalog.list():
        path = os.path.join(output_dir, f"{dataset_name}_coco_format.json")
        convert_to_coco_json(dataset_name, path, allow_cached=False)
        DatasetCatalog.register(name, lambda: DatasetCatalog.get(dataset_name))
        MetadataCatalog.get(name).set(
            thing_classes=list(meta.thing_classes), json_file=path, evaluator_type="coco"
        )
    return name
