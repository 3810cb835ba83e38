"""Builtin dataset names, resolved under ``$DETECTRON2_DATASETS`` (default ``./datasets``).

- ``tt100k_2016_{train,test}``: the official TT100K 2016 release in ``tt100k/``, 45 classes.
- ``tt100k_2016_all_{train,test}``: the same splits with every annotated type as a class.
- ``tt100k_synth_{train,test}``: the synthetic TT100K written by
  ``python -m featsr_d2.core.synthetic --out $DETECTRON2_DATASETS/tt100k_synth`` (the demo and
  test data), 45 classes.
- ``tt100k_synth10_{train,test}``: the demo's synthetic TT100K (``make demo`` writes it to
  ``tt100k_synth10/``): TT100K's ten most frequent classes
  (:data:`featsr_d2.core.tt100k_categories.DEMO_CATEGORIES`), 1500 training and 600 test images;
  its classes are the types in its annotations ("all").
- ``tt100k_synth10_seed1_test``: the same recipe drawn with generator seed 1 (600 test images in
  ``tt100k_synth10_seed1/``, written by ``python -m featsr_d2.core.synthetic --out
  $DETECTRON2_DATASETS/tt100k_synth10_seed1 --num-train 0 --num-test 600 --seed 1 --categories``
  and the demo's classes): a test set no model or choice has seen, for confirmations.

VOC and COCO use Detectron2's own builtin names (``voc_2007_test``, ``coco_2017_val``, ...).
"""

import os

from detectron2.data import DatasetCatalog

from featsr_d2.data.tt100k import register_tt100k_instances

_SPLITS = {
    # name: (folder under the datasets root, split, class set)
    "tt100k_2016_train": ("tt100k", "train", "type45"),
    "tt100k_2016_test": ("tt100k", "test", "type45"),
    "tt100k_2016_all_train": ("tt100k", "train", "all"),
    "tt100k_2016_all_test": ("tt100k", "test", "all"),
    "tt100k_synth_train": ("tt100k_synth", "train", "type45"),
    "tt100k_synth_test": ("tt100k_synth", "test", "type45"),
    "tt100k_synth10_train": ("tt100k_synth10", "train", "all"),
    "tt100k_synth10_test": ("tt100k_synth10", "test", "all"),
    "tt100k_synth10_seed1_test": ("tt100k_synth10_seed1", "test", "all"),
}


def register_all_tt100k(root: str) -> None:
    for name, (folder, split, class_set) in _SPLITS.items():
        if name not in DatasetCatalog.list():
            register_tt100k_instances(name, os.path.join(root, folder), split, class_set=class_set)


register_all_tt100k(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")))
