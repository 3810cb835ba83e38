"""FeatSR's detector for MMDetection: ``FeatSRFasterRCNN``, mmdet's ``FasterRCNN`` whose training
step also makes the 0.5x images and the SR target extractor's maps for
:class:`~featsr_d2.mmdet.featsr_roi_head.FeatSRStandardRoIHead` (Noh et al., ICCV 2019, section
4.3), in the paper's stages 2 and 3 (the head's ``stage``).

- **Frozen trunk.** The backbone, the neck and the RPN are frozen in both stages: no gradients,
  eval mode (:meth:`train` keeps them, and the head's frozen parts, in eval mode), no RPN losses.
  The frozen RPN proposes in training as at inference (``test_cfg.rpn``), as Detectron2's
  eval-mode RPN does in these stages.
- **Sub layers.** G reads each base level with a bottom-up stage (``sub_layers``, one module
  name of the backbone per ``bbox_roi_extractor`` level; default: the stage before the one the
  level comes from, :func:`default_sub_layers`: C4's res4 reads res3 (``layer2``), DC5's res5
  res4, an FPN's P_k reads C_(k-1), P2 reads C2, as ``featsr_d2.config.featsr_sub_features``
  picks them on the Detectron2 side). They are
  captured by forward hooks on those modules while the trunk runs: the backbone's
  ``out_indices`` and the neck stay as the stage-1 config has them. The detector builds the head
  after the backbone, telling it the sub layers' widths and strides.
- **0.5x images and targets.** In stage 2 with SR pairs, the trunk also runs on
  :func:`~featsr_d2.core.featsr.half_resolution` of the preprocessed batch (padded to the data
  preprocessor's ``pad_size_divisor``), and with the extractor's supervision the SR target
  extractor (:func:`~featsr_d2.mmdet.target_extractor.extract_targets`, ``fused_extractor`` and
  ``aligned_extractor``) runs on the 1.0x batch. Stage 3 needs neither.
- **Weights.** A phase trains only some parts; the others must come from the previous phase's
  checkpoint. Loading a state dict that lacks any weight under :meth:`frozen_weight_prefixes`
  (or holds it with another shape) raises :class:`FrozenWeightsMissing`, naming the prefixes and
  the reason (:meth:`_load_from_state_dict`: both ``load_state_dict`` and mmengine's
  ``load_from`` / ``resume`` go through it); and the first training step refuses to run when no
  such state dict was loaded at all (ImageNet weights loaded by a backbone's ``init_cfg`` cover
  the backbone only). The identity control's G and D keep their initialization and are not
  required.
- **Two optimizers.** :meth:`train_step` steps the detector's optimizer (SGD: G and the small
  predictor, or both predictors) and, in stage 2, the discriminator's (Adam) from one backward
  pass (:mod:`featsr_d2.mmdet.optim_wrapper`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from mmdet.models.detectors import FasterRCNN
from mmdet.registry import MODELS
from torch import nn

from featsr_d2.core.featsr import half_resolution
from featsr_d2.mmdet.featsr_roi_head import FeatSRStandardRoIHead
from featsr_d2.mmdet.optim_wrapper import featsr_train_step
from featsr_d2.mmdet.target_extractor import (
    backbone_stages,
    bottom_up_stages,
    check_extractor_support,
    extract_targets,
)

__all__ = ["FeatSRFasterRCNN", "FrozenWeightsMissing", "default_sub_layers"]


class FrozenWeightsMissing(ValueError):
    """A FeatSR phase was given weights without the parts it freezes."""


def default_sub_layers(backbone: nn.Module, neck: nn.Module | None, num_levels: int) -> list[str]:
    """The sub layer of each of the first ``num_levels`` maps of the trunk, as
    ``featsr_d2.config.featsr_sub_features`` picks them on the Detectron2 side: the bottom-up
    stage (:func:`~featsr_d2.mmdet.target_extractor.bottom_up_stages`, of stride 4 at least)
    before the stage the map comes from (its FPN input, or itself without a neck), or that stage
    when none comes before. C4: res4 (``layer3``) reads res3 (``layer2``); DC5: res5 reads res4;
    FPN: P_k reads C_(k-1), P2 reads C2."""
    stages = backbone_stages(backbone)
    order = {stage.name: i for i, stage in enumerate(stages)}
    candidates = [s.name for s in bottom_up_stages(backbone) if s.stride >= 4]
    first = neck.start_level if neck is not None else 0
    inputs = len(neck.lateral_convs) if neck is not None else len(backbone.out_indices)
    if num_levels > inputs:
        raise ValueError(
            f"the RoI head reads {num_levels} maps but only {inputs} come from bottom-up stages: "
            "set sub_layers"
        )
    subs = []
    for i in range(num_levels):
        base = stages[backbone.out_indices[first + i]].name
        before = [name for name in candidates if order[name] < order[base]]
        subs.append(before[-1] if before else base)
    return subs


@MODELS.register_module()
class FeatSRFasterRCNN(FasterRCNN):
    """Faster R-CNN with FeatSR's frozen trunk, 0.5x features, SR targets and two optimizers
    (stages 2 and 3); ``roi_head`` is a ``FeatSRStandardRoIHead``."""

    def __init__(
        self,
        backbone: dict,
        rpn_head: dict,
        roi_head: dict,
        train_cfg: dict,
        test_cfg: dict,
        neck: dict | None = None,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
        *,
        sub_layers: Sequence[str] | None = None,
        fused_extractor: bool = True,
        aligned_extractor: bool = True,
    ):
        """
        Args:
            backbone, rpn_head, roi_head, train_cfg, test_cfg, neck, data_preprocessor, init_cfg:
                as for mmdet's ``FasterRCNN``; ``roi_head`` is a ``FeatSRStandardRoIHead``
                config without ``sub_channels`` / ``sub_strides`` / ``sub_of_level`` (this
                detector fills them).
            sub_layers: the backbone module (e.g. ``"layer2"``) whose output is the sub layer of
                each ``bbox_roi_extractor`` level; None: :func:`default_sub_layers`.
            fused_extractor: run the extractor's strided layers as the fused dilated
                convolution + max pool op (same result, less memory).
            aligned_extractor: place the extractor's pooling windows where the backbone's units
                sit on the 0.5x image; False is the previous placement, J - 1 px off.
        """
        super().__init__(
            backbone=backbone,
            rpn_head=rpn_head,
            roi_head=None,  # built below, once the sub layers' widths are known
            train_cfg=train_cfg,
            test_cfg=test_cfg,
            neck=neck,
            data_preprocessor=data_preprocessor,
            init_cfg=init_cfg,
        )
        if not self.with_rpn:
            raise ValueError("FeatSR needs RPN proposals: give FeatSRFasterRCNN an rpn_head")
        check_extractor_support(self.backbone, self.neck if self.with_neck else None)
        head_cfg = dict(roi_head)
        if head_cfg.get("type") not in ("FeatSRStandardRoIHead", FeatSRStandardRoIHead):
            raise ValueError(
                f"FeatSRFasterRCNN's roi_head must be a FeatSRStandardRoIHead, not "
                f"{head_cfg.get('type')!r} (featsr_d2.mmdet.enable_featsr sets it)"
            )
        filled = {"sub_channels", "sub_strides", "sub_of_level"} & set(head_cfg)
        if filled:
            raise ValueError(f"{sorted(filled)} are set by FeatSRFasterRCNN: leave them out")
        stages = {s.name: s for s in backbone_stages(self.backbone)}
        strides = list(head_cfg["bbox_roi_extractor"]["featmap_strides"])
        neck_module = self.neck if self.with_neck else None
        subs = list(sub_layers or default_sub_layers(self.backbone, neck_module, len(strides)))
        unknown = [s for s in subs if s not in stages]
        if len(subs) != len(strides) or unknown:
            raise ValueError(
                f"sub_layers {subs} must name one of the backbone's stages {sorted(stages)} per "
                f"RoI level {strides}"
            )
        self.sub_layers = list(dict.fromkeys(subs))
        head_cfg.update(
            sub_channels=[stages[s].channels for s in self.sub_layers],
            sub_strides=[stages[s].stride for s in self.sub_layers],
            sub_of_level=[self.sub_layers.index(s) for s in subs],
            train_cfg=train_cfg["rcnn"] if train_cfg is not None else None,
            test_cfg=test_cfg["rcnn"],
        )
        self.roi_head = MODELS.build(head_cfg)
        self.fused_extractor = fused_extractor
        self.aligned_extractor = aligned_extractor
        self._frozen_weights_loaded = False
        for module in self._trunk_modules():
            module.requires_grad_(False)

    # ------------------------------------------------------------------------------------------
    # Freezing and weights

    def _trunk_modules(self) -> list[nn.Module]:
        return [self.backbone, *([self.neck] if self.with_neck else []), self.rpn_head]

    def frozen_modules(self) -> list[nn.Module]:
        """What this phase does not train: the backbone, neck and RPN, and the head's frozen
        parts."""
        return [*self._trunk_modules(), *self.roi_head.frozen_modules()]

    def frozen_weight_prefixes(self) -> list[str]:
        """State-dict key prefixes of :meth:`frozen_modules`: the weights this phase must load
        (from the previous phase), since it does not train them; not those the head keeps at
        their initialization (the ``identity`` control's G and D)."""
        at_init = {id(m) for m in self.roi_head.modules_frozen_at_init()}
        frozen = {id(m) for m in self.frozen_modules()} - at_init
        return [f"{name}." for name, m in self.named_modules() if id(m) in frozen]

    def train(self, mode: bool = True):
        """As :meth:`nn.Module.train`, but frozen modules stay in eval mode (their normalization
        layers keep their statistics)."""
        super().train(mode)
        for module in self.frozen_modules():
            module.eval()
        return self

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        """Refuses a state dict that lacks, or holds with another shape, a weight this phase
        freezes (:class:`FrozenWeightsMissing`, before anything is loaded); records that the
        frozen weights were loaded."""
        own = self.state_dict()
        prefixes = tuple(self.frozen_weight_prefixes())
        needed = [k for k in own if k.startswith(prefixes) and "num_batches_tracked" not in k]
        missing = [k for k in needed if prefix + k not in state_dict]
        wrong = [
            f"{k}: {tuple(state_dict[prefix + k].shape)} in the weights, {tuple(own[k].shape)} in "
            "the model"
            for k in needed
            if prefix + k in state_dict and state_dict[prefix + k].shape != own[k].shape
        ]
        if missing or wrong:
            stage = self.roi_head.stage
            previous = "the stage-1 base detector" if stage == 2 else "FeatSR stage 2"
            parts = []
            if missing:
                absent = sorted({p for p in prefixes for k in missing if k.startswith(p)})
                parts.append(
                    f"{len(missing)} of the {len(needed)} weights under {', '.join(prefixes)} are "
                    f"missing (all of {', '.join(absent)} lack some, e.g. {missing[:3]})"
                )
            if wrong:
                parts.append(f"{len(wrong)} have another shape ({'; '.join(wrong[:3])})")
            raise FrozenWeightsMissing(
                f"Refusing these weights for FeatSR stage {stage}: " + "; ".join(parts) + ". "
                f"Stage {stage} freezes these parts, so its weights must hold them: load the final "
                f"checkpoint of {previous} of this architecture (load_from), not ImageNet weights "
                "or another model's checkpoint."
            )
        self._frozen_weights_loaded = True
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    def require_frozen_weights(self) -> None:
        """Raises :class:`FrozenWeightsMissing` unless a state dict holding the frozen parts was
        loaded (training from ImageNet weights, or from none, would train on a random RPN and
        predictor)."""
        if self._frozen_weights_loaded:
            return
        stage = self.roi_head.stage
        previous = "the stage-1 base detector" if stage == 2 else "FeatSR stage 2"
        raise FrozenWeightsMissing(
            f"FeatSR stage {stage} freezes {', '.join(self.frozen_weight_prefixes())} but no "
            f"weights were loaded for them: set load_from to the final checkpoint of {previous} "
            "(a backbone's init_cfg loads ImageNet weights into the backbone only)."
        )

    # ------------------------------------------------------------------------------------------
    # The trunk

    @contextlib.contextmanager
    def _capturing_sub_layers(self):
        """Yields a dict that the sub layers' outputs fill while the backbone runs."""
        captured: dict[str, torch.Tensor] = {}
        handles = [
            getattr(self.backbone, name).register_forward_hook(
                lambda _m, _i, out, name=name: captured.__setitem__(name, out)
            )
            for name in self.sub_layers
        ]
        try:
            yield captured
        finally:
            for handle in handles:
                handle.remove()

    def extract_feat_and_sub(self, images: torch.Tensor):
        """``extract_feat(images)`` and the sub layers' maps (one per :attr:`sub_layers`)."""
        with self._capturing_sub_layers() as captured:
            x = self.extract_feat(images)
        return x, tuple(captured[name] for name in self.sub_layers)

    def extract_targets(self, images: torch.Tensor, *, aligned: bool | None = None):
        """The SR target extractor's maps of the 1.0x ``images`` (what :meth:`extract_feat`
        returns); ``aligned`` None: :attr:`aligned_extractor`."""
        return extract_targets(
            self.backbone,
            self.neck if self.with_neck else None,
            images,
            fused=self.fused_extractor,
            aligned=self.aligned_extractor if aligned is None else aligned,
        )

    def _proposals(self, x, batch_data_samples, cfg):
        if batch_data_samples[0].get("proposals", None) is not None:
            return [sample.proposals for sample in batch_data_samples]
        metas = [sample.metainfo for sample in batch_data_samples]
        return self.rpn_head.predict_by_feat(
            *self.rpn_head(x), batch_img_metas=metas, cfg=cfg, rescale=False
        )

    # ------------------------------------------------------------------------------------------
    # mmdet's modes

    def loss(self, batch_inputs: torch.Tensor, batch_data_samples) -> dict:
        """The head's losses of this phase; the frozen trunk computes none."""
        heads = self.roi_head
        with torch.no_grad():
            x, sub = self.extract_feat_and_sub(batch_inputs)
            # The frozen RPN proposes as at inference (Detectron2's eval-mode RPN does).
            proposals = self._proposals(x, batch_data_samples, self.test_cfg.rpn)
            lr = lr_sub = targets = None
            if heads.needs_lr_features:
                divisor = getattr(self.data_preprocessor, "pad_size_divisor", 1)
                lr, lr_sub = self.extract_feat_and_sub(half_resolution(batch_inputs, divisor))
            if heads.needs_sr_targets:
                targets = self.extract_targets(batch_inputs)
        return heads.loss(
            x,
            proposals,
            batch_data_samples,
            sub_feats=sub,
            lr_feats=lr,
            lr_sub_feats=lr_sub,
            target_feats=targets,
        )

    def predict(self, batch_inputs: torch.Tensor, batch_data_samples, rescale: bool = True):
        """Detections: small proposals through G and the small predictor."""
        x, sub = self.extract_feat_and_sub(batch_inputs)
        proposals = self._proposals(x, batch_data_samples, self.test_cfg.rpn)
        results = self.roi_head.predict(
            x, proposals, batch_data_samples, rescale=rescale, sub_feats=sub
        )
        return self.add_pred_to_datasample(batch_data_samples, results)

    def _forward(self, batch_inputs: torch.Tensor, batch_data_samples=None) -> tuple:
        """mmdet's tensor mode: the routed scores and deltas of the RPN's proposals."""
        x, sub = self.extract_feat_and_sub(batch_inputs)
        proposals = self._proposals(x, batch_data_samples, self.test_cfg.rpn)
        return (self.roi_head.forward(x, proposals, batch_data_samples, sub_feats=sub),)

    def train_step(self, data, optim_wrapper) -> dict:
        """One iteration: the detector's and (stage 2) the discriminator's optimizers step from
        one backward pass (:func:`~featsr_d2.mmdet.optim_wrapper.featsr_train_step`)."""
        return featsr_train_step(self, self, data, optim_wrapper)
