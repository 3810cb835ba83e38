"""The trainer behind ``tools/train_net.py``: Detectron2's DefaultTrainer with featsr_d2's
evaluators and atomic checkpoints."""

import os

from detectron2.data import MetadataCatalog
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import COCOEvaluator

from featsr_d2.engine.checkpoint import AtomicDetectionCheckpointer
from featsr_d2.evaluation import TT100KEvaluator


def build_featsr_evaluator(cfg, dataset_name: str, output_folder: str | None = None):
    """The official TT100K protocol for TT100K-format datasets; COCO-style AP (AP, AP50, AP75,
    AP-S/M/L) for every other registered dataset, VOC included."""
    output_folder = output_folder or os.path.join(cfg.OUTPUT_DIR, "inference", dataset_name)
    if MetadataCatalog.get(dataset_name).get("evaluator_type") == "tt100k":
        return TT100KEvaluator(
            dataset_name,
            output_folder,
            iou=cfg.TEST.TT100K.IOU,
            min_score=cfg.TEST.TT100K.MIN_SCORE,
            types=cfg.TEST.TT100K.TYPES,
            save_plots=cfg.TEST.TT100K.SAVE_PLOTS,
            num_vis_images=cfg.TEST.TT100K.NUM_VIS_IMAGES,
        )
    return COCOEvaluator(dataset_name, output_dir=output_folder)


class FeatSRTrainer(DefaultTrainer):
    """DefaultTrainer with TT100K/COCO-style evaluation and atomic, resumable checkpoints."""

    def build_hooks(self):
        # DefaultTrainer.__init__ creates a plain DetectionCheckpointer right before it calls this;
        # swap in the atomic one so that the periodic checkpointer and resume both use it.
        plain = self.checkpointer
        self.checkpointer = AtomicDetectionCheckpointer(
            plain.model, plain.save_dir, **plain.checkpointables
        )
        return super().build_hooks()

    def train(self):
        """Train, then return the final evaluation's results (DefaultTrainer returns them only when
        TEST.EXPECTED_RESULTS is set)."""
        super().train()
        return getattr(self, "_last_eval_results", None)  # set by DefaultTrainer's EvalHook

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return build_featsr_evaluator(cfg, dataset_name, output_folder)
