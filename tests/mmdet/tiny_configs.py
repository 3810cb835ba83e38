"""Tiny MMDetection configs for CPU tests, written as config files that inherit the repository's
configs and shrink them (no framework is imported here)."""

import os

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
MMDET_CONFIGS = os.path.join(REPO, "configs", "mmdet")

# A tiny Faster R-CNN (ResNet-18, 16-channel FPN, few proposals), as an override of the detector of
# an MMDetection config built on mmdet's faster-rcnn_r50_fpn.py.
TINY_FASTER_RCNN = dict(
    backbone=dict(depth=18, init_cfg=None),
    neck=dict(in_channels=[64, 128, 256, 512], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32),
    ),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=32)),
        rpn_proposal=dict(nms_pre=200, max_per_img=50),
        rcnn=dict(sampler=dict(num=16)),
    ),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50)),
)

# The CPU demo detector (configs/mmdet/faster-rcnn_mnv2_fpn_tt100k_synth10.py, the detector of the
# synthetic-TT100K TDSR configs) shrunk: MobileNetV2 at a quarter of its width (its outputs 8, 24
# and 80 channels), no ImageNet weights, a 16-channel FPN, few proposals.
TINY_DEMO_DETECTOR = dict(
    backbone=dict(widen_factor=0.25, init_cfg=None),
    neck=dict(in_channels=[8, 24, 80], out_channels=16),
    rpn_head=dict(in_channels=16, feat_channels=16),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=16),
        bbox_head=dict(in_channels=16, fc_out_channels=32),
    ),
    train_cfg=dict(
        rpn=dict(sampler=dict(num=32)),
        rpn_proposal=dict(nms_pre=200, max_per_img=50),
        rcnn=dict(sampler=dict(num=16)),
    ),
    test_cfg=dict(rpn=dict(nms_pre=200, max_per_img=50)),
)

TINY_TDSR = """_base_ = {base!r}
data_root = {data_root!r}
model = dict(
    sr=dict(feat=8, base_filter=4, num_stages=2),
    sr_checkpoint=None,
    detector_checkpoint=None,
    detector={detector!r},
)
train_dataloader = dict(
    batch_size=2, num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root)
)
val_dataloader = dict(num_workers=0, persistent_workers=False, dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
train_cfg = dict(max_iters=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=1), logger=dict(interval=1))
randomness = dict(seed=0)
"""


def write_tiny_tdsr(directory, data_root: str) -> str:
    """A tiny version of configs/mmdet/tdsr/tdsr_dbpn_x4_synth10.py (DBPN of 8 features and 2
    stages, the tiny demo detector, batch 2, 2 iterations, no checkpoints) on ``data_root``; returns
    its path."""
    path = os.path.join(str(directory), "tiny_tdsr.py")
    with open(path, "w") as f:
        f.write(
            TINY_TDSR.format(
                base=os.path.join(MMDET_CONFIGS, "tdsr", "tdsr_dbpn_x4_synth10.py"),
                data_root=data_root.rstrip("/") + "/",
                detector=TINY_DEMO_DETECTOR,
            )
        )
    return path
