"""FeatSR's ROI heads (Noh et al., ICCV 2019, sections 4.2-4.4), for the C4 (Res5) layout.

Beside the base detector's head (the *large predictor*: ``res5`` and ``box_predictor``) sit

- the SR feature generator G, reading the base-layer RoI feature (``res4``) and the sub-layer one
  (``MODEL.FEATSR.SUB_FEATURE``, e.g. ``res3``) pooled to the same size;
- the *small predictor* (``small_res5`` and ``small_predictor``), a replica of the large one; when a
  checkpoint without it is loaded (the stage-1 base detector) it is initialized from the large one;
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
"""

import copy

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.poolers import ROIPooler
from detectron2.modeling.roi_heads import Res5ROIHeads
from detectron2.structures import Boxes, Instances
from torch.func import functional_call

from featsr_d2.modeling.roi_heads.sr_feature_discriminator import (
    SRFeatureDiscriminator,
    content_loss,
    discriminator_loss,
    generator_adversarial_loss,
)
from featsr_d2.modeling.roi_heads.sr_feature_generator import SRFeatureGenerator

__all__ = ["FeatSRRes5ROIHeads", "SUPERVISIONS"]

SUPERVISIONS = ("extractor", "naive", "none")
# Parts of the large predictor and their replicas in the small predictor.
_REPLICAS = {"res5.": "small_res5.", "box_predictor.": "small_predictor."}


def _sqrt_area(boxes: Boxes) -> torch.Tensor:
    return boxes.area().clamp(min=0).sqrt()


@ROI_HEADS_REGISTRY.register()
class FeatSRRes5ROIHeads(Res5ROIHeads):
    """Res5ROIHeads with FeatSR's generator, discriminator and small predictor."""

    @configurable
    def __init__(
        self,
        *,
        sub_feature: str,
        sub_pooler: ROIPooler,
        generator: SRFeatureGenerator,
        discriminator: SRFeatureDiscriminator,
        small_size: float,
        target_min_size: float,
        supervision: str = "extractor",
        content_weight: float = 1.0,
        adversarial_weight: float = 0.01,
        detection_weight: float = 1.0,
        **kwargs,
    ):
        """
        Args:
            sub_feature: the backbone feature of the sub (former) layer.
            sub_pooler: pools the sub feature to the base RoI feature's size.
            generator, discriminator: G and D.
            small_size: proposals with sqrt(area) below this (input pixels) are small.
            target_min_size: SR pairs need a 1.0x box with sqrt(area) at least this.
            supervision: one of :data:`SUPERVISIONS`.
            content_weight, adversarial_weight, detection_weight: loss weights of G's objective.
            kwargs: the arguments of :class:`Res5ROIHeads`.
        """
        super().__init__(**kwargs)
        if supervision not in SUPERVISIONS:
            raise ValueError(
                f"MODEL.FEATSR.SUPERVISION must be one of {SUPERVISIONS}, got {supervision!r}"
            )
        if self.mask_on:
            raise ValueError("FeatSRRes5ROIHeads predicts boxes only: set MODEL.MASK_ON False")
        self.sub_feature = sub_feature
        self.sub_pooler = sub_pooler
        self.generator = generator
        self.discriminator = discriminator
        self.small_res5 = copy.deepcopy(self.res5)
        self.small_predictor = copy.deepcopy(self.box_predictor)
        self.small_size = small_size
        self.target_min_size = target_min_size
        self.supervision = supervision
        self.content_weight = content_weight
        self.adversarial_weight = adversarial_weight
        self.detection_weight = detection_weight
        self._register_load_state_dict_pre_hook(self._init_small_predictor_from_large)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        ret = super().from_config(cfg, input_shape)
        f = cfg.MODEL.FEATSR
        base = ret["in_features"][0]
        if f.SUB_FEATURE not in input_shape:
            raise ValueError(
                f"MODEL.FEATSR.SUB_FEATURE {f.SUB_FEATURE!r} is not a backbone output; add it to "
                f"MODEL.RESNETS.OUT_FEATURES (has {sorted(input_shape)})"
            )
        resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
        ret["sub_feature"] = f.SUB_FEATURE
        ret["sub_pooler"] = ROIPooler(
            output_size=resolution,
            scales=(1.0 / input_shape[f.SUB_FEATURE].stride,),
            sampling_ratio=cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO,
            pooler_type=cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE,
        )
        base_channels = input_shape[base].channels
        ret["generator"] = SRFeatureGenerator(
            cfg, base_channels=base_channels, sub_channels=input_shape[f.SUB_FEATURE].channels
        )
        ret["discriminator"] = SRFeatureDiscriminator(
            cfg, input_shape=(base_channels, resolution, resolution)
        )
        ret.update(
            small_size=f.SMALL_SIZE,
            target_min_size=f.TARGET_MIN_SIZE,
            supervision=f.SUPERVISION,
            content_weight=f.CONTENT_WEIGHT,
            adversarial_weight=f.ADVERSARIAL_WEIGHT,
            detection_weight=f.DETECTION_WEIGHT,
        )
        return ret

    def _init_small_predictor_from_large(self, state_dict, prefix, *args):
        """Loading a checkpoint without the small predictor (the stage-1 base detector) copies the
        large predictor's weights into it, as the paper initializes it."""
        for key in list(state_dict):
            for large, small in _REPLICAS.items():
                if key.startswith(prefix + large):
                    replica = prefix + small + key[len(prefix + large) :]
                    if replica not in state_dict:
                        state_dict[replica] = state_dict[key].clone()

    # ------------------------------------------------------------------------------------------
    def _small_masks(self, boxes: list[Boxes]) -> list[torch.Tensor]:
        return [_sqrt_area(b) < self.small_size for b in boxes]

    def _super_resolve(self, features, boxes: list[Boxes]) -> torch.Tensor:
        base = self.pooler([features[self.in_features[0]]], boxes)
        sub = self.sub_pooler([features[self.sub_feature]], boxes)
        return self.generator(base, sub)

    def _predict(self, features, boxes: list[Boxes], masks: list[torch.Tensor]):
        """(large predictions, small predictions) for the large / small proposals of ``boxes``."""
        large_boxes = [b[~m] for b, m in zip(boxes, masks)]
        small_boxes = [b[m] for b, m in zip(boxes, masks)]
        large = self.res5(self.pooler([features[self.in_features[0]]], large_boxes))
        small = self.small_res5(self._super_resolve(features, small_boxes))
        return self.box_predictor(large.mean(dim=(2, 3))), self.small_predictor(
            small.mean(dim=(2, 3))
        )

    def forward(
        self, images, features, proposals, targets=None, *, lr_features=None, sr_targets=None
    ):
        """
        Args:
            images, features, proposals, targets: as :meth:`Res5ROIHeads.forward`.
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
        pair_boxes, lr_boxes = [], []
        for b in boxes:
            side = _sqrt_area(b)
            keep = (side / 2 < self.small_size) & (side >= self.target_min_size)
            pair_boxes.append(b[keep])
            lr_boxes.append(Boxes(b.tensor[keep] * 0.5))
        sr = self._super_resolve(lr_features, lr_boxes)
        with torch.no_grad():
            target = self.pooler([target_maps[self.in_features[0]]], pair_boxes)
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
