"""VOC AP50 per class, the columns of TDSR's Table 1."""

from __future__ import annotations

import os
import tempfile
from collections import defaultdict

from detectron2.evaluation import PascalVOCDetectionEvaluator
from detectron2.evaluation.pascal_voc_evaluation import voc_eval
from detectron2.utils import comm

__all__ = ["VOCPerClassEvaluator"]


class VOCPerClassEvaluator(PascalVOCDetectionEvaluator):
    """Detectron2's VOC evaluator (AP, AP50, AP75 over classes), plus each class's AP50 as
    ``"AP50-<class>"``, the columns of TDSR's Table 1 (VOC07 11-point metric for 2007)."""

    def evaluate(self):
        ret = super().evaluate()
        all_predictions = comm.gather(self._predictions, dst=0)
        if not comm.is_main_process():
            return ret
        predictions = defaultdict(list)
        for part in all_predictions:
            for cls_id, lines in part.items():
                predictions[cls_id].extend(lines)
        with tempfile.TemporaryDirectory(prefix="voc_per_class_") as dirname:
            template = os.path.join(dirname, "{}.txt")
            for cls_id, name in enumerate(self._class_names):
                with open(template.format(name), "w") as f:
                    f.write("\n".join(predictions.get(cls_id, [""])))
                _, _, ap = voc_eval(
                    template,
                    self._anno_file_template,
                    self._image_set_path,
                    name,
                    ovthresh=0.5,
                    use_07_metric=self._is_2007,
                )
                ret["bbox"][f"AP50-{name}"] = float(ap * 100)
        return ret
