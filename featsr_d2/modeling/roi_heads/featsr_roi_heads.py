"""FeatSR's ROI heads (Noh et al., ICCV 2019, sections 4.2-4.4), for the C4 (Res5) and FPN layouts.

Beside the base detector's head (the *large predictor*: ``res5`` / ``box_head``, and
``box_predictor``) sit

- the SR feature generator G, reading the base-layer RoI feature and the sub-layer one pooled to
  the same size. C4: base ``res4``, sub ``MODEL.FEATSR.SUB_FEATURE`` (e.g. ``res3``). FPN: base the
  RoI's assigned level P_k, sub the next finer level P_(k-1); a RoI on the finest level has no finer
  level and reads P_k twice (our choice: the paper describes the C4-style backbone only);
- the *small predictor* (``small_res5`` / ``small_box_head``, and ``small_predictor``), a replica of
  the large one; when a checkpoint without it is loaded (the stage-1 base detector) it is
  initialized from the large one;
- the three-layer MLP discriminator D.

Routing: a proposal whose sqrt(area) on the input image is below ``MODEL.FEATSR.SMALL_SIZE`` is
small. Small proposals go through G and the small predictor, large ones through the large
predictor; their predictions are merged before the per-class NMS.

Training losses (stage 2):

- ``loss_cls`` / ``loss_box_reg``: the large predictor on large proposals (fine-tuning);
- ``loss_cls_small`` / ``loss_box_reg_small``: the small predictor on G(F^1.0) of small proposals;
  they train the small predictor and G (times ``DETECTION_WEIGHT``);
- ``loss_sr_content`` (eq. 4) and ``loss_sr_adversarial`` (eq. 5): G on pairs (F^0.5, T^1.0) of the
  sampled proposals whose 0.5x box is small and whose 1.0x box is at least ``TARGET_MIN_SIZE``;
  the adversarial loss sees D through detached parameters, so it trains G only;
- ``loss_discriminator`` (eq. 6): D on T^1.0 against detached S^0.5, so it trains D only.

One backward pass of the sum therefore gives every module the gradient of its own objective; the
trainer steps D with its own optimizer (``featsr_d2.engine.trainer``). Targets come from the SR
target extractor (``SUPERVISION: extractor``), from the plain backbone on the 1.0x image (``naive``,
Table 4's naive supervision), or are not used (``none``: no pairs, G learns from the small
predictor's losses only; Table 4's SR without supervision).

Pooling runs on featsr_d2's RoIAlign (:func:`~featsr_d2.layers.multimap_roi_align`): the base and
sub RoI features of a set of proposals come from one call, and so do the pairs' F^0.5 (base and
sub) and T^1.0, with every RoI pooled from its own pyramid level and no per-level masking. The
box pooler's type sets the alignment and sampling ("ROIAlign", "ROIAlignV2", or featsr_d2's
"FeatSRROIAlign(V2)", which the heads also accept); the result equals Detectron2's poolers.
"""

import copy

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.modeling.roi_heads import Res5ROIHeads, StandardROIHeads
from detectron2.structures import Boxes, Instances
from torch.func import functional_call

from featsr_d2.layers import multimap_roi_align
from featsr_d2.modeling.poolers import FeatSRPoolersMixin
from featsr_d2.modeling.roi_heads.sr_feature_discriminator import (
    SRFeatureDiscriminator,
    content_loss,
    discriminator_loss,
    generator_adversarial_loss,
)
from featsr_d2.modeling.roi_heads.sr_feature_generator import SRFeatureGenerator

__all__ = ["FeatSRRes5ROIHeads", "FeatSRStandardROIHeads", "SUPERVISIONS"]

SUPERVISIONS = ("extractor", "naive", "none")


def _sqrt_area(boxes: Boxes) -> torch.Tensor:
    return boxes.area().clamp(min=0).sqrt()


def _featsr_from_config(cfg, base_channels: int, sub_channels: int, resolution: int) -> dict:
    f = cfg.MODEL.FEATSR
    return {
        "generator": SRFeatureGenerator(
            cfg, base_channels=base_channels, sub_channels=sub_channels
        ),
        "discriminator": SRFeatureDiscriminator(
            cfg, input_shape=(base_channels, resolution, resolution)
        ),
        "small_size": f.SMALL_SIZE,
        "target_min_size": f.TARGET_MIN_SIZE,
        "supervision": f.SUPERVISION,
        "content_weight": f.CONTENT_WEIGHT,
        "adversarial_weight": f.ADVERSARIAL_WEIGHT,
        "detection_weight": f.DETECTION_WEIGHT,
    }


class _FeatSRHeads:
    """Routing, losses and inference shared by the C4 and FPN heads. A subclass provides
    ``_base_maps(features)`` and ``_sub_maps(features)`` (the maps, one per pyramid level, and
    their spatial scales, that the base and sub RoI features of a RoI on level k come from; one
    level for C4), ``_box_pooler`` (the base detector's pooler, whose alignment and sampling the
    heads use), ``_large_head(x)`` and ``_small_head(x)`` (what stands between a RoI feature and
    the large / small predictor), ``_levels(boxes)`` on a pyramid, and ``_REPLICAS``: the large
    predictor's parts and their replicas in the small predictor."""

    _REPLICAS: dict[str, str] = {}

    def _init_featsr(
        self,
        *,
        generator: SRFeatureGenerator,
        discriminator: SRFeatureDiscriminator,
        small_size: float,
        target_min_size: float,
        supervision: str,
        content_weight: float,
        adversarial_weight: float,
        detection_weight: float,
    ):
        if supervision not in SUPERVISIONS:
            raise ValueError(
                f"MODEL.FEATSR.SUPERVISION must be one of {SUPERVISIONS}, got {supervision!r}"
            )
        self.generator = generator
        self.discriminator = discriminator
        if supervision == "none":
            # No pairs, so no loss reaches D: frozen, it stays out of DDP's gradient reduction.
            self.discriminator.requires_grad_(False)
        for large, small in self._REPLICAS.items():
            setattr(self, small.rstrip("."), copy.deepcopy(getattr(self, large.rstrip("."))))
        self.small_size = small_size
        self.target_min_size = target_min_size
        self.supervision = supervision
        self.content_weight = content_weight
        self.adversarial_weight = adversarial_weight
        self.detection_weight = detection_weight
        self._register_load_state_dict_pre_hook(self._init_small_predictor_from_large)

    def _levels(self, boxes: list[Boxes]) -> torch.Tensor | None:
        """Pyramid level index of each box; None for a single-level layout."""
        return None

    def _pool(self, maps, boxes: list[Boxes], levels=None) -> list[torch.Tensor]:
        """Pools ``boxes`` from each ``(maps, scales)`` entry of ``maps`` in one RoIAlign call;
        a RoI on level k reads level k of every entry (``levels``: from :meth:`_levels` if None)."""
        first = self._box_pooler.level_poolers[0]
        if not (hasattr(first, "aligned") and hasattr(first, "sampling_ratio")):
            raise ValueError(
                "FeatSR heads pool with RoIAlign: set MODEL.ROI_BOX_HEAD.POOLER_TYPE to ROIAlign, "
                f"ROIAlignV2, FeatSRROIAlign or FeatSRROIAlignV2 (the box pooler is {first})"
            )
        if levels is None:
            levels = self._levels(boxes)
        return multimap_roi_align(
            [m for m, _ in maps],
            [b.tensor for b in boxes],
            first.output_size,
            [s for _, s in maps],
            first.sampling_ratio,
            first.aligned,
            levels=levels,
        )

    def _init_small_predictor_from_large(self, state_dict, prefix, *args):
        """Loading a checkpoint without the small predictor (the stage-1 base detector) copies the
        large predictor's weights into it, as the paper initializes it."""
        for key in list(state_dict):
            for large, small in self._REPLICAS.items():
                if key.startswith(prefix + large):
                    replica = prefix + small + key[len(prefix + large) :]
                    if replica not in state_dict:
                        state_dict[replica] = state_dict[key].clone()

    # ------------------------------------------------------------------------------------------
    def _small_masks(self, boxes: list[Boxes]) -> list[torch.Tensor]:
        return [_sqrt_area(b) < self.small_size for b in boxes]

    def _predict(self, features, boxes: list[Boxes], masks: list[torch.Tensor]):
        """(large predictions, small predictions) for the large / small proposals of ``boxes``."""
        large_boxes = [b[~m] for b, m in zip(boxes, masks)]
        small_boxes = [b[m] for b, m in zip(boxes, masks)]
        (large,) = self._pool([self._base_maps(features)], large_boxes)
        base, sub = self._pool([self._base_maps(features), self._sub_maps(features)], small_boxes)
        large = self._large_head(large)
        small = self._small_head(self.generator(base, sub))
        return self.box_predictor(large), self.small_predictor(small)

    def forward(
        self, images, features, proposals, targets=None, *, lr_features=None, sr_targets=None
    ):
        """
        Args:
            images, features, proposals, targets: as :meth:`ROIHeads.forward`.
            lr_features: in training, the backbone's features of the 0.5x images.
            sr_targets: in training, the SR target extractor's features of the 1.0x images.
        """
        del images
        if not self.training:
            return self._inference(features, proposals), {}
        proposals = self.label_and_sample_proposals(proposals, targets)
        boxes = [p.proposal_boxes for p in proposals]
        masks = self._small_masks(boxes)
        large_pred, small_pred = self._predict(features, boxes, masks)
        losses = self.box_predictor.losses(large_pred, [p[~m] for p, m in zip(proposals, masks)])
        small_losses = self.small_predictor.losses(
            small_pred, [p[m] for p, m in zip(proposals, masks)]
        )
        losses.update({f"{k}_small": v * self.detection_weight for k, v in small_losses.items()})
        if self.supervision != "none":
            if lr_features is None or (self.supervision == "extractor" and sr_targets is None):
                raise ValueError(
                    "FeatSR training needs lr_features and sr_targets (FeatSRRCNN makes them)"
                )
            target_maps = sr_targets if self.supervision == "extractor" else features
            losses.update(self._sr_pair_losses(boxes, lr_features, target_maps))
        return [], losses

    def _sr_pair_losses(
        self, boxes: list[Boxes], lr_features, target_maps
    ) -> dict[str, torch.Tensor]:
        """Losses of eqs. 4-6 on the (F^0.5, T^1.0) pairs of the sampled proposals."""
        lr_boxes = []
        for b in boxes:
            side = _sqrt_area(b)
            keep = (side / 2 < self.small_size) & (side >= self.target_min_size)
            lr_boxes.append(Boxes(b.tensor[keep] * 0.5))
        # F^0.5 and T^1.0 from the 0.5x box's level. T^1.0 pools the 1.0x maps at the 1.0x box:
        # the 0.5x box at twice the scale, which is the same RoIAlign (exact: powers of two).
        maps, scales = self._base_maps(target_maps)
        target_spec = (maps, [2.0 * s for s in scales])
        lr_base, lr_sub, target = self._pool(
            [self._base_maps(lr_features), self._sub_maps(lr_features), target_spec], lr_boxes
        )
        sr = self.generator(lr_base, lr_sub)
        target = target.detach()  # a fixed target: no gradient reaches the target maps
        frozen_d = {k: v.detach() for k, v in self.discriminator.named_parameters()}
        adversarial = generator_adversarial_loss(
            functional_call(self.discriminator, frozen_d, (sr,))
        )
        return {
            "loss_sr_content": self.content_weight * content_loss(sr, target),
            "loss_sr_adversarial": self.adversarial_weight * adversarial,
            "loss_discriminator": discriminator_loss(
                self.discriminator(target), self.discriminator(sr.detach())
            ),
        }

    def _inference(self, features, proposals: list[Instances]) -> list[Instances]:
        boxes = [p.proposal_boxes for p in proposals]
        masks = self._small_masks(boxes)
        (large_scores, large_deltas), (small_scores, small_deltas) = self._predict(
            features, boxes, masks
        )
        mask = cat(masks) if masks else torch.zeros(0, dtype=torch.bool)
        scores = large_scores.new_empty((mask.numel(), large_scores.shape[1]))
        deltas = large_deltas.new_empty((mask.numel(), large_deltas.shape[1]))
        scores[~mask], scores[mask] = large_scores, small_scores
        deltas[~mask], deltas[mask] = large_deltas, small_deltas
        instances, _ = self.box_predictor.inference((scores, deltas), proposals)
        return instances


@ROI_HEADS_REGISTRY.register()
class FeatSRRes5ROIHeads(FeatSRPoolersMixin, _FeatSRHeads, Res5ROIHeads):
    """Res5ROIHeads with FeatSR's generator, discriminator and small predictor (C4)."""

    _REPLICAS = {"res5.": "small_res5.", "box_predictor.": "small_predictor."}

    @configurable
    def __init__(self, *, sub_feature: str, sub_scale: float, featsr: dict, **kwargs):
        """
        Args:
            sub_feature: the backbone feature of the sub (former) layer.
            sub_scale: its spatial scale (1 / stride); it is pooled to the base RoI feature's size.
            featsr: generator, discriminator, small_size, target_min_size, supervision and the
                loss weights (see :func:`_featsr_from_config`).
            kwargs: the arguments of :class:`Res5ROIHeads`.
        """
        super().__init__(**kwargs)
        if self.mask_on:
            raise ValueError("FeatSR heads predict boxes only: set MODEL.MASK_ON False")
        self.sub_feature = sub_feature
        self.sub_scale = sub_scale
        self._init_featsr(**featsr)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        sub = cfg.MODEL.FEATSR.SUB_FEATURE
        if sub not in input_shape:
            raise ValueError(
                f"MODEL.FEATSR.SUB_FEATURE {sub!r} is not a backbone output; add it to "
                f"MODEL.RESNETS.OUT_FEATURES (has {sorted(input_shape)})"
            )
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        ret["sub_feature"] = sub
        ret["sub_scale"] = 1.0 / input_shape[sub].stride
        base = input_shape[ret["in_features"][0]].channels
        ret["featsr"] = _featsr_from_config(cfg, base, input_shape[sub].channels, resolution)
        return ret

    @property
    def _box_pooler(self):
        return self.pooler

    def _base_maps(self, features):
        return [features[self.in_features[0]]], [self.pooler.level_poolers[0].spatial_scale]

    def _sub_maps(self, features):
        return [features[self.sub_feature]], [self.sub_scale]

    def _large_head(self, x):
        return self.res5(x).mean(dim=(2, 3))

    def _small_head(self, x):
        return self.small_res5(x).mean(dim=(2, 3))


@ROI_HEADS_REGISTRY.register()
class FeatSRStandardROIHeads(FeatSRPoolersMixin, _FeatSRHeads, StandardROIHeads):
    """StandardROIHeads (FPN) with FeatSR's generator, discriminator and small predictor."""

    _REPLICAS = {"box_head.": "small_box_head.", "box_predictor.": "small_predictor."}

    @configurable
    def __init__(self, *, featsr: dict, **kwargs):
        """
        Args:
            featsr: see :class:`FeatSRRes5ROIHeads`.
            kwargs: the arguments of :class:`StandardROIHeads`.
        """
        super().__init__(**kwargs)
        if self.mask_on or self.keypoint_on:
            raise ValueError("FeatSR heads predict boxes only: set MODEL.MASK_ON False")
        self._init_featsr(**featsr)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        channels = input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        ret["featsr"] = _featsr_from_config(cfg, channels, channels, resolution)
        return ret

    def _levels(self, boxes):
        p = self.box_pooler
        return assign_boxes_to_levels(
            boxes, p.min_level, p.max_level, p.canonical_box_size, p.canonical_level
        )

    @property
    def _box_pooler(self):
        return self.box_pooler

    def _base_maps(self, features):
        scales = [p.spatial_scale for p in self.box_pooler.level_poolers]
        return [features[f] for f in self.box_in_features], scales

    def _sub_maps(self, features):
        """Level k reads P_(k-1); the finest level reads itself."""
        maps, scales = self._base_maps(features)
        return maps[:1] + maps[:-1], scales[:1] + scales[:-1]

    def _large_head(self, x):
        return self.box_head(x)

    def _small_head(self, x):
        return self.small_box_head(x)
