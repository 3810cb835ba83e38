"""What the FeatSR MMDetection tests share: the shipped configs (with a tiny stand-in for a dataset
base the branch lacks), tiny widths over them, tiny samples, and stage-1 / stage-2 weights.

Imports mmdet / mmcv / mmengine inside the functions (see conftest.py).
"""

import functools
import os
import shutil
import tempfile

import torch

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIGS = os.path.join(REPO, "configs", "mmdet")
DATASET_BASES = ("tt100k", "tt100k_synth10")
# The stand-in for a dataset base this checkout lacks: the model and optimizers need no dataset.
STAND_IN = "# A stand-in for the dataset base (tests/mmdet/featsr_mmdet.py).\n"
# The shipped FeatSR configs by layout: (stage-1, stage-2, stage-3).
LAYOUTS = {
    "R50-FPN": (
        "faster-rcnn_r50_fpn_tt100k.py",
        "featsr_r50_fpn_tt100k.py",
        "featsr_r50_fpn_tt100k_stage3.py",
    ),
    "R50-C4": (
        "faster-rcnn_r50-caffe-c4_tt100k.py",
        "featsr_r50-caffe-c4_tt100k.py",
        "featsr_r50-caffe-c4_tt100k_stage3.py",
    ),
    "MNV2-FPN": (
        "faster-rcnn_mnv2_fpn_tt100k_synth10.py",
        "featsr_mnv2_fpn_tt100k_synth10.py",
        "featsr_mnv2_fpn_tt100k_synth10_stage3.py",
    ),
}


@functools.lru_cache(maxsize=1)
def config_dir() -> str:
    """configs/mmdet, or a copy of it with a stand-in for each dataset base it lacks."""
    missing = [n for n in DATASET_BASES if not os.path.isfile(f"{CONFIGS}/_base_/datasets/{n}.py")]
    if not missing:
        return CONFIGS
    copy = os.path.join(tempfile.mkdtemp(prefix="featsr_mmdet_configs_"), "mmdet")
    shutil.copytree(CONFIGS, copy)
    os.makedirs(f"{copy}/_base_/datasets", exist_ok=True)
    for name in missing:
        with open(f"{copy}/_base_/datasets/{name}.py", "w") as f:
            f.write(STAND_IN)
    return copy


def load_config(name: str):
    """The shipped config ``name`` (a file of configs/mmdet), as mmengine reads it."""
    from mmengine.config import Config

    return Config.fromfile(os.path.join(config_dir(), name))


def mmdet_config(name: str):
    """MMDetection's own config ``name`` (a file of its bundled configs, e.g.
    ``faster_rcnn/faster-rcnn_r50_fpn_1x_coco.py``)."""
    import mmdet
    from mmengine.config import Config

    return Config.fromfile(os.path.join(os.path.dirname(mmdet.__file__), ".mim", "configs", name))


def tiny(cfg, *, proposals: int = 48, rois: int = 16):
    """``cfg`` with tiny widths (R50: base width 8, C4 keeps mmdet's fixed-width res5 head but
    pools 4x4 RoIs), few proposals and RoIs, a tiny G and D; in place, returned."""
    m = cfg.model
    fpn = m.get("neck") is not None
    if m.backbone.type == "ResNet" and fpn:
        m.backbone.update(base_channels=8, stem_channels=8)
        m.neck.update(in_channels=[32, 64, 128, 256], out_channels=16)
        m.rpn_head.update(in_channels=16, feat_channels=16)
        m.roi_head.bbox_roi_extractor.out_channels = 16
        m.roi_head.bbox_head.update(in_channels=16, fc_out_channels=32)
    elif m.backbone.type == "ResNet":  # C4 (mmdet's ResLayer head has fixed widths) or DC5
        m.rpn_head.update(feat_channels=32)
        shared = bool(m.roi_head.get("shared_head"))
        m.roi_head.bbox_roi_extractor.roi_layer.output_size = 4
        m.roi_head.bbox_head.roi_feat_size = 2 if shared else 4
        if not shared:
            m.roi_head.bbox_head.fc_out_channels = 32
    else:  # MobileNetV2-FPN
        m.neck.out_channels = 16
        m.rpn_head.update(in_channels=16, feat_channels=16)
        m.roi_head.bbox_roi_extractor.out_channels = 16
        m.roi_head.bbox_head.update(in_channels=16, fc_out_channels=32)
    m.backbone.init_cfg = None
    if m.roi_head.get("shared_head"):
        m.roi_head.shared_head.init_cfg = None
    m.train_cfg.rpn_proposal.update(nms_pre=proposals, max_per_img=proposals)
    m.train_cfg.rcnn.sampler.num = rois
    m.test_cfg.rpn.update(nms_pre=proposals, max_per_img=proposals)
    if m.type == "FeatSRFasterRCNN":
        m.roi_head.update(
            generator=dict(num_blocks=1, hidden_channels=8),
            discriminator=dict(hidden_dim=16, pool_size=2),
            small_size=48,  # most RoIs of a 96 px image are small
        )
    return cfg


def build(cfg, seed: int = 0):
    """The model of ``cfg``, initialized under ``seed``."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import featsr_d2.mmdet  # noqa: F401  (registers FeatSR's modules)

    register_all_modules()
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model


def samples(size: int = 96, *, empty_last: bool = False) -> list:
    """Data samples of ``size`` x ``size`` images with a small and a large box (the last image
    without any with ``empty_last``)."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    boxes = torch.tensor([[60.0, 58.0, 84.0, 80.0], [8.0, 12.0, 70.0, 76.0]])
    out = []
    for k in range(2):
        meta = dict(img_shape=(size, size), ori_shape=(size, size), scale_factor=(1.0, 1.0))
        sample = DetDataSample(metainfo=meta)
        gt = InstanceData()
        keep = 0 if (empty_last and k == 1) else 2
        gt.bboxes = boxes[:keep].clone()
        gt.labels = torch.tensor([1, 2])[:keep]
        sample.gt_instances = gt
        out.append(sample)
    return out


def data(size: int = 96, *, empty_last: bool = False) -> dict:
    """A batch as a data loader gives it (uint8 BGR images and their samples)."""
    generator = torch.Generator().manual_seed(0)
    images = [
        (torch.rand(3, size, size, generator=generator) * 255).to(torch.uint8) for _ in range(2)
    ]
    return {"inputs": images, "data_samples": samples(size, empty_last=empty_last)}


def stage1_state(layout: str) -> dict:
    """The state dict of the (tiny, randomly initialized) stage-1 detector of ``layout``."""
    return build(tiny(load_config(LAYOUTS[layout][0])), seed=1).state_dict()


def featsr_model(layout: str, stage: int, **head):
    """The tiny FeatSR model of ``layout`` and ``stage`` (its shipped config, ``head`` overriding
    the RoI head's settings), with the previous phase's weights loaded: the stage-1 detector's
    for stage 2; for stage 3, a stage-2 model's whose G and the small predictor moved."""
    cfg = tiny(load_config(LAYOUTS[layout][stage - 1]))
    cfg.model.roi_head.update(head)
    model = build(cfg)
    if stage == 2:
        model.load_state_dict(stage1_state(layout), strict=False)
    else:
        stage2, _ = featsr_model(layout, 2, **head)
        with torch.no_grad():
            for p in stage2.roi_head.featsr.parameters():
                p.add_(0.01 * torch.randn_like(p))
        model.load_state_dict(stage2.state_dict())
    return model, cfg
