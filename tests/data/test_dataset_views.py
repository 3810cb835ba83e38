"""Registered views of registered datasets (featsr_d2/data/dataset_views.py)."""

from detectron2.data import DatasetCatalog, MetadataCatalog

from featsr_d2.data.dataset_views import first_images
from featsr_d2.data.tt100k import register_tt100k_instances


def test_first_images_of_a_dataset_whose_classes_come_from_its_annotations(tiny_tt100k):
    """class_set "all" puts thing_classes in the metadata when the dataset loads: the view of
    its first images must carry them before anything has loaded the original (this broke
    tools/eval_lr_detection.py --max-images on the demo's ten-class set)."""
    root = tiny_tt100k[2]
    name = "_test_views_all_classes"
    register_tt100k_instances(name, root, "test", class_set="all")
    assert not hasattr(MetadataCatalog.get(name), "thing_classes")
    view = first_images(name, 2)
    assert MetadataCatalog.get(view).thing_classes
    assert len(DatasetCatalog.get(view)) == 2
    assert first_images(name, 2) == view  # registered once
