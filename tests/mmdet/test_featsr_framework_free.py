"""FeatSR's MMDetection integration runs where Detectron2 cannot be imported: in a fresh
interpreter with ``detectron2`` blocked (``sys.modules["detectron2"] = None``, as for a package
that is not installed), ``import featsr_d2.mmdet`` works, ``enable_featsr`` turns MMDetection's
own R50-FPN config into FeatSR's, and the model builds, trains a step with both optimizers and
predicts, without loading Detectron2 or any module of featsr_d2's Detectron2 side. (The static
rule over every import: tests/test_import_layers.py.)"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import json, os, sys

sys.modules["detectron2"] = None  # "import detectron2" now raises, as without the package
try:
    import detectron2  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not block")

import mmdet
import torch
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.structures import InstanceData

import featsr_d2.mmdet
from featsr_d2.mmdet import enable_featsr

register_all_modules()
configs = os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs")
cfg = enable_featsr(Config.fromfile(f"{configs}/faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py"))
m = cfg.model
m.backbone.update(base_channels=8, stem_channels=8, init_cfg=None)
m.neck.update(in_channels=[32, 64, 128, 256], out_channels=16)
m.rpn_head.update(in_channels=16, feat_channels=16)
m.roi_head.bbox_roi_extractor.out_channels = 16
m.roi_head.bbox_head.update(in_channels=16, fc_out_channels=32)
m.roi_head.generator = dict(num_blocks=1, hidden_channels=8)
m.roi_head.discriminator = dict(hidden_dim=16)
m.train_cfg.rpn_proposal.update(nms_pre=32, max_per_img=32)
m.train_cfg.rcnn.sampler.num = 16
m.test_cfg.rpn.update(nms_pre=32, max_per_img=32)
m.test_cfg.rcnn.score_thr = 0.0
torch.manual_seed(0)
model = MODELS.build(m)
model.init_weights()
model.load_state_dict(model.state_dict())  # stands for the stage-1 checkpoint
wrappers = build_optim_wrapper(model, cfg.optim_wrapper)

def batch():
    meta = dict(img_shape=(96, 96), ori_shape=(96, 96), scale_factor=(1.0, 1.0))
    samples = []
    for _ in range(2):
        sample = DetDataSample(metainfo=meta)
        gt = InstanceData()
        gt.bboxes = torch.tensor([[60.0, 58.0, 84.0, 80.0], [8.0, 12.0, 70.0, 76.0]])
        gt.labels = torch.tensor([1, 2])
        sample.gt_instances = gt
        samples.append(sample)
    images = [(torch.rand(3, 96, 96) * 255).to(torch.uint8) for _ in range(2)]
    return {"inputs": images, "data_samples": samples}

log = model.train_step(batch(), wrappers)
model.eval()
with torch.no_grad():
    results = model.test_step(batch())
out = {
    "type": type(model).__name__,
    "optimizers": sorted(wrappers.keys()),
    "losses": sorted(k for k in log if k.startswith("loss")),
    "detections": len(results[0].pred_instances.bboxes),
    "detectron2_loaded": sorted(k for k in sys.modules if k.split(".")[0] == "detectron2"
                                and sys.modules[k] is not None),
    "detectron2_side_loaded": sorted(
        k for k in sys.modules if k.startswith(tuple(f"featsr_d2.{p}" for p in (
            "config", "modeling", "data", "engine", "checkpoint", "evaluation")))
    ),
}
print("RESULT " + json.dumps(out))
"""


def test_the_mmdet_integration_trains_and_predicts_without_detectron2():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line[len("RESULT ") :])
    assert out["type"] == "FeatSRFasterRCNN"
    assert out["optimizers"] == ["detector", "discriminator"]
    assert {"loss_sr_content", "loss_sr_adversarial", "loss_discriminator"} <= set(out["losses"])
    assert {"loss_cls_small", "loss_bbox_small"} <= set(out["losses"])
    assert out["detections"] > 0
    assert out["detectron2_loaded"] == [] and out["detectron2_side_loaded"] == []
