"""featsr_d2.mmdet works where Detectron2 cannot be imported: in a fresh interpreter with
``detectron2`` blocked (``sys.modules[name] = None``, as for a package that is not installed), it
imports, registers its components, loads the tiny synthetic TT100K, trains the tiny TDSR a step
and scores detections with the TT100K metric, and no module of featsr_d2's Detectron2 side is
loaded. (The static rule over every import: tests/test_import_layers.py.)"""

import json
import os
import subprocess
import sys

from tiny_configs import REPO, write_tiny_tdsr

SCRIPT = r"""
import json, sys

sys.modules["detectron2"] = None  # "import detectron2" now raises, as without the package
try:
    import detectron2  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not block")

import numpy as np
import torch
from mmdet.registry import DATASETS, METRICS, MODELS, TRANSFORMS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.dataset import pseudo_collate
from mmengine.optim import build_optim_wrapper

import featsr_d2
import featsr_d2.mmdet

register_all_modules()
out = {"api": sorted(featsr_d2.__all__)}
out["registered"] = [
    registry.get(name) is not None
    for registry, name in (
        (DATASETS, "FeatSRTT100KDataset"), (METRICS, "FeatSRTT100KMetric"),
        (MODELS, "FeatSRTaskDrivenSR"), (MODELS, "FeatSRSuperResolvePreprocessor"),
        (MODELS, "DBPN"), (MODELS, "CAJNN"), (TRANSFORMS, "FeatSRMakeLRImage"),
    )
]
cfg = Config.fromfile(sys.argv[1])
torch.manual_seed(0)
model = MODELS.build(cfg.model)
dataset = DATASETS.build(cfg.train_dataloader.dataset)
np.random.seed(0)
losses = model.train_step(pseudo_collate([dataset[0], dataset[1]]),
                          build_optim_wrapper(model, cfg.optim_wrapper))
out["losses"] = sorted(losses)

test = DATASETS.build(cfg.test_dataloader.dataset)
metric = METRICS.build(cfg.test_evaluator)
metric.dataset_meta = test.metainfo
for k in range(len(test)):
    sample = test[k]["data_samples"]
    gt = sample.gt_instances  # the ground truth as detections: everything found
    sample.pred_instances = gt.new(bboxes=gt.bboxes.tensor, scores=torch.ones(len(gt)),
                                   labels=gt.labels)
    metric.process({}, [sample.to_dict()])
out["scores"] = metric.evaluate(len(test))
out["detectron2_side"] = sorted(
    k for k in sys.modules
    if k.startswith(tuple(f"featsr_d2.{m}" for m in ("config", "data", "modeling", "checkpoint",
                                                      "evaluation", "engine")))
)
out["detectron2_loaded"] = [k for k, v in sys.modules.items() if k.startswith("detectron2") and v]
print("RESULT " + json.dumps(out))
"""


def test_featsr_d2_mmdet_works_without_detectron2(tmp_path, tiny_synth10):
    config = write_tiny_tdsr(tmp_path, tiny_synth10)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, config], cwd=tmp_path, env=env, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line[len("RESULT ") :])
    assert out["api"] == ["__version__", "build_info", "has_compiled_ops"]  # the core alone
    assert out["registered"] == [True] * 7
    assert {"loss_rec", "loss_cls", "loss_rpn_cls"} <= set(out["losses"])
    assert out["scores"]["tt100k/all_recall"] == 100.0
    assert out["scores"]["tt100k/all_accuracy"] == 100.0
    assert out["detectron2_side"] == [] and out["detectron2_loaded"] == []
