"""FeatSR on any MMDetection Faster R-CNN config: :func:`enable_featsr`, the counterpart of
Detectron2's ``featsr_d2.enable_featsr``.

It turns an mmengine ``Config`` of mmdet's ``FasterRCNN`` (ResNet, with or without the deep stem,
ResNeXt or MobileNetV2; C4 with a shared head, DC5, or FPN) into FeatSR's model of the paper's
stage 2 or 3, in place, keeping everything else: the detector becomes ``FeatSRFasterRCNN``, the
RoI head ``FeatSRStandardRoIHead`` of that ``stage``; a full training config also gets FeatSR's
two optimizers (its ``optim_wrapper`` becomes the ``detector`` one, beside the discriminator's
Adam), its ``param_scheduler`` schedules the detector's optimizer only, its distributed wrapper
``FeatSRDistributedDataParallel``, and ``custom_imports`` loads ``featsr_d2.mmdet``. The backbone,
neck, RPN and their ``out_indices`` stay as they are (the detector captures the sub layers).
``load_from`` should then name the previous phase's checkpoint.

It raises ValueError, saying why, for what FeatSR cannot serve: another detector (single-stage,
cascade, Mask R-CNN), no RPN, a RoI head other than ``StandardRoIHead``, a pooler that is not
RoIAlign, a backbone or neck the SR target extractor cannot walk, mixed precision.
"""

from __future__ import annotations

from featsr_d2.mmdet.featsr_roi_head import FEATSR_STAGES

__all__ = ["DISCRIMINATOR_OPTIMIZER", "enable_featsr"]

# D's own optimizer (as featsr_d2.engine.trainer builds it: MODEL.FEATSR.DISCRIMINATOR_LR, betas
# usual for GAN discriminators; the paper gives none).
DISCRIMINATOR_OPTIMIZER = dict(
    type="OptimWrapper", optimizer=dict(type="Adam", lr=1e-4, betas=(0.5, 0.999))
)
_DETECTORS = ("FasterRCNN", "FeatSRFasterRCNN")
_HEADS = ("StandardRoIHead", "FeatSRStandardRoIHead")
_BACKBONES = ("ResNet", "ResNeXt", "MobileNetV2")
_CONSTRUCTOR = "FeatSROptimWrapperConstructor"


def _refuse(why: str) -> None:
    raise ValueError(f"enable_featsr: {why}")


def _check_model(model) -> None:
    kind = model.get("type")
    if kind not in _DETECTORS:
        hint = {
            "CascadeRCNN": "a cascade of box heads (FeatSR's small predictor replicates one head)",
            "MaskRCNN": "a mask head (FeatSR's mmdet head refines the box branch only)",
        }.get(kind, "its small RoIs are what FeatSR refines")
        _refuse(
            f"FeatSR needs a two-stage Faster R-CNN (model.type FasterRCNN), not {kind!r}: {hint}"
        )
    if not model.get("rpn_head"):
        _refuse("FeatSR needs RPN proposals: the config has no rpn_head")
    head = model.get("roi_head") or {}
    if head.get("type") not in _HEADS:
        _refuse(
            f"FeatSR extends mmdet's StandardRoIHead (FPN, or C4 with a shared_head), not "
            f"roi_head.type {head.get('type')!r}"
        )
    if head.get("mask_head"):
        _refuse("FeatSR's mmdet head refines the box branch of a Faster R-CNN: no mask_head")
    extractor = head.get("bbox_roi_extractor") or {}
    layer = extractor.get("roi_layer") or {}
    if extractor.get("type") != "SingleRoIExtractor" or layer.get("type") != "RoIAlign":
        _refuse(
            "FeatSR pools with RoIAlign: bbox_roi_extractor must be a SingleRoIExtractor with "
            f"roi_layer RoIAlign, not {extractor.get('type')!r} with {layer.get('type')!r}"
        )
    if layer.get("pool_mode", "avg") != "avg":
        _refuse(f"FeatSR pools with RoIAlign's average mode, not {layer.get('pool_mode')!r}")
    backbone = model.get("backbone") or {}
    if backbone.get("type") == "ResNetV1d":
        _refuse("the SR target extractor has no version of ResNetV1d's average-pooled shortcut")
    if backbone.get("type") not in _BACKBONES:
        _refuse(
            f"FeatSR's SR target extractor walks mmdet's {', '.join(_BACKBONES)}, not the "
            f"backbone {backbone.get('type')!r}"
        )
    for key, what in (("dcn", "deformable convolutions"), ("plugins", "plugins")):
        if backbone.get(key):
            _refuse(f"the SR target extractor has no version of the backbone's {what}")
    if backbone.get("avg_down"):
        _refuse("the SR target extractor has no version of avg_down's average-pooled shortcut")
    neck = model.get("neck")
    if neck is not None:
        if neck.get("type") != "FPN":
            _refuse(f"the SR target extractor walks mmdet's FPN, not the neck {neck.get('type')!r}")
        if neck.get("add_extra_convs"):
            _refuse("the SR target extractor has no version of FPN's extra convolutions")


def _two_optimizers(cfg) -> None:
    wrapper = cfg.get("optim_wrapper")
    if wrapper is None or wrapper.get("constructor") == _CONSTRUCTOR:
        return
    if wrapper.get("constructor", "DefaultOptimWrapperConstructor") not in (
        "DefaultOptimWrapperConstructor"
    ):
        _refuse(
            f"FeatSR builds its two optimizers with {_CONSTRUCTOR}; the config's own constructor "
            f"{wrapper.get('constructor')!r} cannot be combined with it"
        )
    if wrapper.get("type") == "AmpOptimWrapper":
        _refuse("mixed precision (AmpOptimWrapper): FeatSR's two optimizers share one backward")
    detector = {k: v for k, v in wrapper.items() if k != "constructor"}
    cfg.optim_wrapper = dict(
        constructor=_CONSTRUCTOR, detector=detector, discriminator=DISCRIMINATOR_OPTIMIZER
    )
    schedulers = cfg.get("param_scheduler")
    if isinstance(schedulers, (list, tuple)) or (schedulers and "type" in schedulers):
        listed = list(schedulers) if isinstance(schedulers, (list, tuple)) else [schedulers]
        cfg.param_scheduler = dict(detector=listed, discriminator=[])


def enable_featsr(cfg, stage: int = 2):
    """Turn the mmengine ``Config`` ``cfg`` of an MMDetection Faster R-CNN into FeatSR's model of
    the paper's phase ``stage`` (2: generator, discriminator and small predictor; 3: both
    predictors), in place (see the module docstring). Returns ``cfg``.

    Raises:
        ValueError: saying why, for a config FeatSR cannot serve.
    """
    if stage not in FEATSR_STAGES:
        _refuse(f"FeatSR's stage must be one of {FEATSR_STAGES}, got {stage!r}")
    model = cfg.get("model")
    if model is None:
        _refuse("the config has no model")
    _check_model(model)
    model.type = "FeatSRFasterRCNN"
    model.roi_head.type = "FeatSRStandardRoIHead"
    model.roi_head.stage = stage
    _two_optimizers(cfg)
    if "train_cfg" in cfg or "optim_wrapper" in cfg:  # a training config
        cfg.model_wrapper_cfg = dict(type="FeatSRDistributedDataParallel")
    imports = cfg.get("custom_imports") or dict(imports=[], allow_failed_imports=False)
    names = list(imports.get("imports", []))
    if "featsr_d2.mmdet" not in names:
        imports["imports"] = [*names, "featsr_d2.mmdet"]
    cfg.custom_imports = imports
    return cfg
