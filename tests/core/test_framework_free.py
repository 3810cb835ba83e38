"""The core runs without any detection framework: in a fresh interpreter where ``detectron2``,
``mmdet``, ``mmcv`` and ``mmengine`` cannot be imported (``sys.modules[name] = None``, as for a
package that is not installed), ``import featsr_d2`` gives the core alone, every module of
``featsr_d2.core`` imports, and G, D and their losses, the box branch, the small-proposal rules,
the extractor's layers, the ops, an SR network and a degradation run on tiny inputs, and the
synthetic TT100K generator writes a tiny dataset. (The static rule over every import:
tests/test_import_layers.py.)"""

import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

SCRIPT = r"""
import importlib, json, os, pkgutil, sys, tempfile

FRAMEWORKS = ("detectron2", "mmdet", "mmcv", "mmengine")
for name in FRAMEWORKS:
    sys.modules[name] = None  # "import detectron2" now raises, as without the package

try:
    import detectron2  # noqa: F401
except ImportError:
    pass
else:
    raise SystemExit("the blocker does not block")

import numpy as np
import torch
from torch import nn

import featsr_d2
import featsr_d2.core

modules = sorted(m.name for m in pkgutil.walk_packages(featsr_d2.core.__path__, "featsr_d2.core."))
for name in modules:
    importlib.import_module(name)

from featsr_d2.core.degradations import BicubicDownscale, Compose, JPEGCompression
from featsr_d2.core.featsr import (
    FeatSRBoxBranch, SRFeatureDiscriminator, SRFeatureGenerator, atrous_conv, atrous_max_pool,
    cap_small, small_mask, sr_pair_boxes, supervision,
)
from featsr_d2.core.layers import multimap_roi_align, roi_align
from featsr_d2.core.sr import DBPN, Bicubic
from featsr_d2.core.synthetic import generate_synthetic_tt100k
from featsr_d2.core.tt100k_categories import DEMO_CATEGORIES

torch.manual_seed(0)
out = {"modules": modules, "api": sorted(featsr_d2.__all__)}
g = SRFeatureGenerator(base_channels=8, sub_channels=[4, 6], num_blocks=2, hidden_channels=4)
d = SRFeatureDiscriminator(input_shape=(8, 5, 5), hidden_dim=6, pool_size=2)
branch = FeatSRBoxBranch(generator=g, discriminator=d, small_head=nn.Flatten(),
                         small_predictor=nn.Linear(200, 3), content_weight=1.0,
                         adversarial_weight=0.01, detection_weight=1.0)
base, sub = torch.randn(3, 8, 5, 5), g.project_sub(1, torch.randn(3, 6, 5, 5))
target = torch.randn(3, 8, 5, 5)
losses = branch.sr_losses(base, sub, target, content=supervision("extractor").content)
sum(losses.values()).backward()
out["losses"] = sorted(losses)
out["sr_feature"] = list(branch(base, sub).shape)

boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 40.0, 40.0], [4.0, 4.0, 40.0, 30.0]])
out["small"] = cap_small(small_mask(boxes, 32), 1).tolist()
out["pairs"] = list(sr_pair_boxes(boxes, 32, 16).shape)

conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
bn = nn.BatchNorm2d(4).eval()
x = torch.randn(1, 3, 17, 20)
with torch.no_grad():
    t = atrous_max_pool(atrous_conv(conv, x, norm=bn, activation=nn.ReLU(), fused=True), 3, 2, 1)
out["targets"] = list(t.shape)
maps = [torch.randn(1, 4, 16, 16)]
pooled = multimap_roi_align([maps], [boxes], 4, [[0.25]], 0, True)
out["pooled"] = [list(p.shape) for p in pooled]
out["roi_align"] = list(roi_align(maps[0], [boxes], 2, 0.25).shape)

with torch.no_grad():
    sr = DBPN(scale=2, feat=8, base_filter=4, num_stages=2)(torch.rand(1, 3, 6, 7))
out["sr"] = list(sr.shape)
out["bicubic"] = list(Bicubic(scale=3)(torch.rand(1, 3, 4, 5)).shape)
image = np.random.default_rng(0).integers(0, 256, (16, 20, 3), dtype=np.uint8)
lr = Compose([BicubicDownscale(4), JPEGCompression(30)])(image, np.random.default_rng(1))
out["lr"] = list(lr.shape)
with tempfile.TemporaryDirectory() as root:  # the synthetic TT100K, written without a framework
    summary = generate_synthetic_tt100k(root, num_train=2, num_test=1, image_size=64, seed=0,
                                        categories=DEMO_CATEGORIES, workers=1, progress=False)
    out["synthetic"] = [summary["num_images"], sorted(os.listdir(root))]
loaded = sorted({k.split(".")[0] for k, v in sys.modules.items() if v is not None})
out["frameworks_loaded"] = [k for k in loaded if k in FRAMEWORKS]
out["detectron2_side_loaded"] = sorted(
    k for k in sys.modules if k.startswith(("featsr_d2.config", "featsr_d2.modeling",
                                            "featsr_d2.data", "featsr_d2.checkpoint"))
)
print("RESULT " + json.dumps(out))
"""


def test_the_core_imports_and_runs_without_detectron2_or_mmdet():
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line[len("RESULT ") :])
    assert len(out["modules"]) >= 20 and "featsr_d2.core.featsr.small_proposals" in out["modules"]
    assert out["api"] == ["__version__", "build_info", "has_compiled_ops"]  # the core alone
    assert out["frameworks_loaded"] == [] and out["detectron2_side_loaded"] == []
    assert out["losses"] == ["loss_discriminator", "loss_sr_adversarial", "loss_sr_content"]
    assert out["sr_feature"] == [3, 8, 5, 5]
    assert out["small"] == [True, False, False] and out["pairs"] == [2, 4]
    assert out["targets"] == [1, 4, 5, 5]  # the backbone's sizes: conv 17x20 -> 9x10 -> pool 5x5
    assert out["pooled"] == [[3, 4, 4, 4]] and out["roi_align"] == [3, 4, 2, 2]
    assert out["sr"] == [1, 3, 12, 14] and out["bicubic"] == [1, 3, 12, 15]
    assert out["lr"] == [4, 5, 3]
    assert out["synthetic"] == [
        {"train": 2, "test": 1},
        [".featsr_synthetic.json", "annotations.json", "test", "train"],
    ]
