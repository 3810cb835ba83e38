"""FeatSR's ROI heads (Noh et al., ICCV 2019, sections 4.2-4.4), for the C4 (Res5) and FPN layouts.

Beside the base detector's head (the *large predictor*: ``res5`` / ``box_head``, and
``box_predictor``) sits the child ``featsr``, a
:class:`~featsr_d2.core.featsr.featsr_box_branch.FeatSRBoxBranch` built in ``from_config``:

- the SR feature generator G, reading the base-layer RoI feature and the sub (former) layer's RoI
  feature pooled at the same box to the same size. The sub layer of each base level is a
  bottom-up feature (:func:`featsr_d2.config.featsr_sub_features`): C4 base ``res4``, sub
  ``res3``; FPN level P_k, sub the bottom-up stage C_(k-1) at twice its resolution (P2: C2);
- the *small predictor* (``featsr.small_head``, and ``featsr.small_predictor``), a replica of
  the large one; when a checkpoint without it is loaded (the stage-1 base detector) it is
  initialized from the large one;
- the three-layer MLP discriminator D.

Routing (:mod:`featsr_d2.core.featsr.small_proposals`): a proposal whose sqrt(area) on the input
image is below ``MODEL.FEATSR.SMALL_SIZE`` is small. Small proposals go through G and the small
predictor, large ones through the large predictor; their predictions are merged before the
per-class NMS. At inference ``MAX_SMALL_PER_IMAGE`` (K) caps the small proposals per image that
take the small path: the K with the highest objectness (the RPN sorts them); the others take the
large path, as in the base detector (K = 0 is the base detector, bit for bit).

The paper's phases (section 4.3, ``MODEL.FEATSR.STAGE``; stage 1 is the base detector, backbone
and RPN are frozen in both of these):

- stage 2 trains G, D and the small predictor; the large predictor is frozen and not run:
  ``loss_cls_small`` / ``loss_box_reg_small`` (the small predictor on G(F^1.0) of small
  proposals, times ``DETECTION_WEIGHT``; they train the small predictor and G),
  ``loss_sr_content`` (eq. 4) and ``loss_sr_adversarial`` (eq. 5) on pairs (F^0.5, T^1.0) of the
  sampled proposals whose 0.5x box is small and whose 1.0x box is at least ``TARGET_MIN_SIZE``
  (at most ``MAX_PAIRS_PER_IMAGE`` per image, the first: foreground comes first)
  (the adversarial loss sees D through detached parameters, so it trains G only), and
  ``loss_discriminator`` (eq. 6: D on T^1.0 against detached S^0.5, so it trains D only). One
  backward pass gives every module the gradient of its own objective; the trainer steps D with
  its own optimizer (``featsr_d2.engine.trainer``): G and D are trained in alternation within
  each iteration, as the paper trains them alternately;
- stage 3 fine-tunes both predictors with G and D frozen: the small one on G's features of small
  proposals (``loss_*_small``), the large one on large proposals only (``loss_cls`` /
  ``loss_box_reg``).

Targets (``SUPERVISION``) come from the SR target extractor (``extractor``), from the plain
backbone on the 1.0x image (``naive``, Table 4's naive supervision), or are used by D only
(``none``: Table 4's SR without supervision, the model without the content loss).
``detection_only`` makes no pairs at all: G learns from the small predictor's losses only and D
is frozen. ``identity`` is the control without SR: G stays the identity it is initialized to
(frozen, with D) and only the small predictor trains, which isolates the split into a small and a
large predictor (the paper credits part of its gain to it) from the feature SR itself.

Pooling runs on featsr_d2's RoIAlign (:func:`~featsr_d2.core.layers.multimap_roi_align`): the
base and sub RoI features of a set of proposals come from one call, and so do the pairs' F^0.5
(base and sub) and T^1.0, with every RoI pooled from its own pyramid level and no per-level masking
(when the sub layers differ in width, each sub layer is pooled by its own call and projected by G).
The
heads own their pooling parameters, read from the config as Detectron2's box pooler reads them
(``ROI_BOX_HEAD.POOLER_TYPE`` "ROIAlign" or "ROIAlignV2" sets the alignment,
``POOLER_SAMPLING_RATIO``, ``POOLER_RESOLUTION``, and one scale per ``ROI_HEADS.IN_FEATURES`` level
from the backbone's strides), and assign RoIs to FPN levels with Detectron2's
``assign_boxes_to_levels``; the result equals Detectron2's ``ROIPooler``.

The heads replace only the box branch (``_forward_box``); Detectron2's mask and keypoint branches
(``MODEL.MASK_ON``, ``MODEL.KEYPOINT_ON``) run as in the base heads, on the sampled proposals in
training and on the merged detections at inference, and are trained in both phases (they are not
part of FeatSR's routing).

A checkpoint without the small predictor (the stage-1 base detector) initializes it from the large
one, as the paper does, and says so in the log; one written before G, D and the small predictor
moved under ``featsr.`` (state-dict version 2 and older) is renamed to this layout, also logged
(:meth:`_FeatSRHeads._load_from_state_dict`).

The small predictor's events (accuracy, foreground fraction) are logged under ``small/``.
"""

import abc
import copy
import logging
import math

import torch
from detectron2.config import configurable
from detectron2.layers import ShapeSpec, cat
from detectron2.modeling import ROI_HEADS_REGISTRY
from detectron2.modeling.poolers import assign_boxes_to_levels
from detectron2.modeling.roi_heads import Res5ROIHeads, StandardROIHeads
from detectron2.modeling.roi_heads.roi_heads import select_foreground_proposals
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import get_event_storage
from torch import nn
from torch.nn.modules.utils import _pair

from featsr_d2.config import FEATSR_STAGES, ROI_ALIGN_TYPES, featsr_sub_features
from featsr_d2.core.featsr import (
    FeatSRBoxBranch,
    SRFeatureDiscriminator,
    SRFeatureGenerator,
    cap_small,
    small_mask,
    sr_pair_boxes,
)
from featsr_d2.core.featsr.supervision import supervision as supervision_mode
from featsr_d2.core.layers import multimap_roi_align

__all__ = ["FeatSRRes5ROIHeads", "FeatSRStandardROIHeads"]

logger = logging.getLogger(__name__)

# Detectron2's ROIPooler defaults for the FPN level of a box, which its ROI heads keep.
_CANONICAL_BOX_SIZE = 224
_CANONICAL_LEVEL = 4


def _pooling_from_config(cfg, input_shape: dict[str, ShapeSpec]) -> dict:
    """The heads' own RoIAlign parameters, read as Detectron2's box pooler reads them: the
    resolution, sampling ratio and alignment of ``MODEL.ROI_BOX_HEAD`` and one scale per
    ``MODEL.ROI_HEADS.IN_FEATURES`` level."""
    box = cfg.MODEL.ROI_BOX_HEAD
    if box.POOLER_TYPE not in ROI_ALIGN_TYPES:
        raise ValueError(
            f"FeatSR heads pool with RoIAlign: set MODEL.ROI_BOX_HEAD.POOLER_TYPE to one of "
            f"{tuple(ROI_ALIGN_TYPES)}, not {box.POOLER_TYPE!r}"
        )
    return {
        "pooler_resolution": box.POOLER_RESOLUTION,
        "pooler_scales": [1.0 / input_shape[f].stride for f in cfg.MODEL.ROI_HEADS.IN_FEATURES],
        "sampling_ratio": box.POOLER_SAMPLING_RATIO,
        "aligned": ROI_ALIGN_TYPES[box.POOLER_TYPE],
    }


def _box_branch_from_config(
    cfg,
    *,
    base_channels: int,
    sub_channels: list[int],
    large_head: nn.Module,
    large_predictor: nn.Module,
) -> FeatSRBoxBranch:
    """G and D (``MODEL.FEATSR.GENERATOR`` / ``DISCRIMINATOR``) for base RoI features of
    ``base_channels`` and sub layers of ``sub_channels`` at ``ROI_BOX_HEAD.POOLER_RESOLUTION``; the
    small predictor, copies of ``large_head`` and ``large_predictor``; the loss weights."""
    f = cfg.MODEL.FEATSR
    g, d = f.GENERATOR, f.DISCRIMINATOR
    resolution = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
    return FeatSRBoxBranch(
        generator=SRFeatureGenerator(
            base_channels=base_channels,
            sub_channels=sub_channels,
            num_blocks=g.NUM_BLOCKS,
            hidden_channels=g.HIDDEN_CHANNELS,
            kernel_size=g.KERNEL_SIZE,
            block=g.BLOCK,
            chunk_size=g.CHUNK_SIZE,
        ),
        discriminator=SRFeatureDiscriminator(
            input_shape=(base_channels, resolution, resolution),
            hidden_dim=d.HIDDEN_DIM,
            pool_size=d.POOL_SIZE,
        ),
        small_head=copy.deepcopy(large_head),
        small_predictor=copy.deepcopy(large_predictor),
        content_weight=f.CONTENT_WEIGHT,
        adversarial_weight=f.ADVERSARIAL_WEIGHT,
        detection_weight=f.DETECTION_WEIGHT,
    )


def _featsr_from_config(
    cfg,
    input_shape: dict[str, ShapeSpec],
    base_channels: int,
    large_head: nn.Module,
    large_predictor: nn.Module,
    pooling: dict,
) -> dict:
    """The FeatSR arguments shared by both layouts: the :class:`FeatSRBoxBranch` (G, D, and the
    small predictor, copies of the large one: ``large_head`` and ``large_predictor``), the sub
    layers, the settings and the ``pooling`` parameters (:func:`_pooling_from_config`)."""
    f = cfg.MODEL.FEATSR
    subs = featsr_sub_features(cfg)
    missing = [s for s in dict.fromkeys(subs) if s not in input_shape]
    if missing:
        raise ValueError(
            f"FeatSR's sub layers {missing} are not backbone outputs (it has "
            f"{sorted(input_shape)}): add them to the bottom-up network's OUT_FEATURES "
            "(MODEL.RESNETS / MODEL.MNV2), or set MODEL.FEATSR.SUB_FEATURES; "
            "featsr_d2.enable_featsr does the former"
        )
    sources = list(dict.fromkeys(subs))
    return {
        "box_branch": _box_branch_from_config(
            cfg,
            base_channels=base_channels,
            sub_channels=[input_shape[s].channels for s in sources],
            large_head=large_head,
            large_predictor=large_predictor,
        ),
        "sub_features": subs,
        "sub_scales": [1.0 / input_shape[s].stride for s in subs],
        "stage": f.STAGE,
        "small_size": f.SMALL_SIZE,
        "max_small_per_image": f.MAX_SMALL_PER_IMAGE,
        "max_pairs_per_image": f.MAX_PAIRS_PER_IMAGE,
        "target_min_size": f.TARGET_MIN_SIZE,
        "supervision": f.SUPERVISION,
        **pooling,
    }


class _FeatSRHeads(abc.ABC):
    """FeatSR's box branch, shared by the C4 and FPN heads: it replaces Detectron2's
    ``_forward_box`` (routing, pooling, losses and inference) around the child ``featsr`` (a
    :class:`FeatSRBoxBranch`: G, D and the small predictor) and keeps the checkpoint conversion.
    It comes first among the bases of a Detectron2 ROI head class, which provides the large
    predictor (and the mask and keypoint poolers) and implements the layout's hooks below
    (``_base_maps``, ``_large_head``, ``_small_head``, ``_levels``), ``_REPLICAS`` and
    ``_V2_LAYOUT``."""

    # The large predictor's parts and their replicas in the small predictor (state-dict prefixes).
    _REPLICAS: dict[str, str] = {}
    # Prefixes of G, D and the small predictor before version 3 (directly under the heads), and
    # theirs in the FeatSRBoxBranch since.
    _V2_LAYOUT: dict[str, str] = {
        "generator.": "featsr.generator.",
        "discriminator.": "featsr.discriminator.",
        "small_predictor.": "featsr.small_predictor.",
    }
    # 3: G, D and the small predictor under ``featsr.``; 2: directly under the heads; 1 or none:
    # as 2, but may lack the small predictor (the stage-1 detector's). See _load_from_state_dict.
    _version = 3

    def _init_featsr(
        self,
        *,
        box_branch: FeatSRBoxBranch,
        sub_features: list[str],
        sub_scales: list[float],
        stage: int,
        small_size: float,
        max_small_per_image: int,
        target_min_size: float,
        max_pairs_per_image: int = -1,
        supervision: str,
        pooler_resolution: int | tuple[int, int],
        pooler_scales: list[float],
        sampling_ratio: int,
        aligned: bool,
    ):
        self.mode = supervision_mode(supervision)  # raises for an unknown mode
        if stage not in FEATSR_STAGES:
            raise ValueError(f"MODEL.FEATSR.STAGE must be one of {FEATSR_STAGES}, got {stage!r}")
        self.featsr = box_branch
        self.sub_features = list(sub_features)
        self.sub_scales = list(sub_scales)
        self._sub_sources = list(dict.fromkeys(sub_features))
        self.stage = stage
        self.small_size = small_size
        self.max_small_per_image = max_small_per_image
        self.max_pairs_per_image = max_pairs_per_image
        self.target_min_size = target_min_size
        self.supervision = supervision
        # RoIAlign of the base, sub and target RoI features (see _pooling_from_config).
        self.pooler_resolution = _pair(pooler_resolution)
        self.pooler_scales = [float(s) for s in pooler_scales]
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned
        for module in self.frozen_modules():
            module.requires_grad_(False)

    # Layout hooks: each layout's heads implement them (a heads class without them cannot be
    # instantiated).
    @abc.abstractmethod
    def _base_maps(self, features) -> tuple[list[torch.Tensor], list[float]]:
        """The maps (one per pyramid level) that the base RoI feature of a RoI on level k comes
        from, and their spatial scales; one level for C4."""

    @abc.abstractmethod
    def _large_head(self, x: torch.Tensor) -> torch.Tensor:
        """What stands between a base RoI feature and the large predictor."""

    @abc.abstractmethod
    def _small_head(self, x: torch.Tensor) -> torch.Tensor:
        """What stands between G's output and the small predictor."""

    def frozen_modules(self) -> list[nn.Module]:
        """The parts of the heads this phase does not train (kept in eval mode by the
        meta-architecture): the large predictor in stage 2; G and D in stage 3; D when no loss
        reaches it (``detection_only``), which also keeps it out of DDP's gradient reduction; G
        and D with ``identity``."""
        large = [getattr(self, name.rstrip(".")) for name in self._REPLICAS]
        g, d = self.featsr.generator, self.featsr.discriminator
        if self.stage == 2:
            frozen = [] if self.mode.generator else [g]
            return [*large, *frozen] + ([] if self.mode.discriminator else [d])
        return [g, d]

    def modules_frozen_at_init(self) -> list[nn.Module]:
        """Frozen parts that keep their initialization rather than loaded weights: G (the
        identity) and D when stage 2 trains neither (the ``identity`` control)."""
        if self.stage == 2 and not self.mode.generator:
            return [self.featsr.generator, self.featsr.discriminator]
        return []

    @property
    def needs_lr_features(self) -> bool:
        """Whether training needs the backbone's features of the 0.5x images (SR pairs)."""
        return self.stage == 2 and self.mode.pairs

    @property
    def needs_sr_targets(self) -> bool:
        """Whether training needs the SR target extractor's features of the 1.0x images."""
        return self.stage == 2 and self.mode.needs_extractor

    def _levels(self, boxes: list[Boxes]) -> torch.Tensor | None:
        """Pyramid level index of each box; None for a single-level layout."""
        return None

    def _pool(self, maps, boxes: list[Boxes], levels) -> list[torch.Tensor]:
        """Pools ``boxes`` from each ``(maps, scales)`` entry of ``maps`` in one RoIAlign call;
        a RoI on level k reads level k of every entry (``levels``: None for one level)."""
        return multimap_roi_align(
            [m for m, _ in maps],
            [b.tensor for b in boxes],
            self.pooler_resolution,
            [s for _, s in maps],
            self.sampling_ratio,
            self.aligned,
            levels=levels,
        )

    def _pool_generator_inputs(self, features, boxes: list[Boxes], extra=()):
        """G's base and sub RoI features of ``boxes`` on ``features`` (sub at G's input width),
        and the RoI features of each ``(maps, scales)`` entry of ``extra`` (a RoI on level k
        reads level k)."""
        levels = self._levels(boxes)
        sub_spec = ([features[f] for f in self.sub_features], self.sub_scales)
        if self.featsr.generator.sub_projections is None:
            base, sub, *rest = self._pool(
                [self._base_maps(features), sub_spec, *extra], boxes, levels
            )
            return base, sub, rest
        base, *rest = self._pool([self._base_maps(features), *extra], boxes, levels)
        return base, self._pool_sub_by_layer(features, boxes, levels), rest

    def _pool_sub_by_layer(self, features, boxes: list[Boxes], levels) -> torch.Tensor:
        """Sub RoI features when the sub layers differ in width: each layer pools its own RoIs
        (those on the levels it serves) and G projects them to its input width. Every layer
        runs, with no RoI if need be, so that each projection gets a gradient."""
        counts = [len(b) for b in boxes]
        device = boxes[0].tensor.device if boxes else torch.device("cpu")
        if levels is None:
            levels = torch.zeros(sum(counts), dtype=torch.long, device=device)
        layer_of_level = torch.as_tensor(
            [self._sub_sources.index(f) for f in self.sub_features], device=device
        )
        layer = layer_of_level[levels]
        parts = []
        for index, name in enumerate(self._sub_sources):
            scale = self.sub_scales[self.sub_features.index(name)]
            masks = (layer == index).split(counts)
            layer_boxes = [Boxes(b.tensor[m]) for b, m in zip(boxes, masks)]
            (pooled,) = self._pool([([features[name]], [scale])], layer_boxes, None)
            parts.append((torch.cat(masks), self.featsr.generator.project_sub(index, pooled)))
        out = parts[0][1].new_zeros((layer.numel(), *parts[0][1].shape[1:]))
        for mask, pooled in parts:
            out[mask] = pooled
        return out

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        """A state dict older than version 3 has G, D and the small predictor directly under the
        heads: their entries move under ``featsr.`` (:attr:`_V2_LAYOUT`), and the log says so.
        One older than version 2 (the FeatSR heads' own before it, or a plain Detectron2 head's:
        the stage-1 base detector) may lack the small predictor: its missing entries are copied
        from the large predictor's, as the paper initializes it, and the log says so. From
        version 2 on, a missing small predictor is reported as missing."""
        version = local_metadata.get("version", None)
        if version is None or version < 3:
            renamed = set()
            for key in list(state_dict):
                for old, new in self._V2_LAYOUT.items():
                    if key.startswith(prefix + old):
                        state_dict[prefix + new + key[len(prefix + old) :]] = state_dict.pop(key)
                        renamed.add((prefix + old, prefix + new))
                        break
            if renamed:
                logger.info(
                    "FeatSR heads: a checkpoint of version %s; renamed %s",
                    version,
                    ", ".join(f"{old}* to {new}*" for old, new in sorted(renamed)),
                )
        if version is None or version < 2:
            filled = set()
            for key in list(state_dict):
                for large, small in self._REPLICAS.items():
                    if key.startswith(prefix + large):
                        replica = prefix + small + key[len(prefix + large) :]
                        if replica not in state_dict:
                            state_dict[replica] = state_dict[key].clone()
                            filled.add((prefix + large, prefix + small))
            if filled:
                logger.info(
                    "FeatSR heads: the checkpoint has no small predictor (the stage-1 detector's); "
                    "initialized %s from %s",
                    ", ".join(small + "*" for _, small in sorted(filled)),
                    ", ".join(large + "*" for large, _ in sorted(filled)),
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # ------------------------------------------------------------------------------------------
    def _small_masks(self, boxes: list[Boxes]) -> list[torch.Tensor]:
        return [small_mask(b.tensor, self.small_size) for b in boxes]

    def _small_losses(self, predictions, proposals: list[Instances]) -> dict[str, torch.Tensor]:
        """The small predictor's losses (``loss_*_small``, times ``DETECTION_WEIGHT``) of its
        ``predictions`` for ``proposals``; its events are logged under ``small/``."""
        with get_event_storage().name_scope("small"):
            losses = self.featsr.small_predictor.losses(predictions, proposals)
        return {f"{k}_small": v * self.featsr.detection_weight for k, v in losses.items()}

    def _predict_large(self, features, boxes: list[Boxes]):
        (x,) = self._pool([self._base_maps(features)], boxes, self._levels(boxes))
        return self.box_predictor(self._large_head(x))

    def _predict_small(self, features, boxes: list[Boxes]):
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.stage == 2):
            base, sub, _ = self._pool_generator_inputs(features, boxes)
            x = self.featsr(base, sub)
        return self.featsr.small_predictor(self._small_head(x))

    @torch.no_grad()
    def classify_boxes(self, features, boxes: list[Boxes], *, small_path: bool) -> torch.Tensor:
        """Class scores (softmax, background last) of given boxes, e.g. the ground truth, through
        G and the small predictor (``small_path``) or through the large predictor: what the heads
        tell from a box, whether or not the RPN found it."""
        predict = self._predict_small if small_path else self._predict_large
        scores, _ = predict(features, boxes)
        return scores.softmax(dim=1)

    @torch.no_grad()
    def generator_change(self, features, boxes: list[Boxes]) -> torch.Tensor:
        """``||G(x) - x|| / ||x||`` of each box's base RoI feature x: how far training has moved G
        from the identity it starts as."""
        base, sub, _ = self._pool_generator_inputs(features, boxes)
        return self.featsr.generator_change(base, sub)

    def _forward_box(self, features, proposals, *, lr_features=None, sr_targets=None):
        """Detectron2's box-branch hook: in training, the losses of the sampled ``proposals``;
        at inference, the detections (small proposals through G and the small predictor).

        Args:
            features, proposals: as :meth:`StandardROIHeads._forward_box`.
            lr_features: in stage-2 training, the backbone's features of the 0.5x images.
            sr_targets: in stage-2 training, the SR target extractor's features of the 1.0x
                images (``needs_sr_targets``).
        """
        if not self.training:
            return self._inference(features, proposals)
        masks = self._small_masks([p.proposal_boxes for p in proposals])
        small = [p[m] for p, m in zip(proposals, masks)]
        losses = {}
        if self.stage == 3:  # the large predictor, on large proposals only
            large = [p[~m] for p, m in zip(proposals, masks)]
            predictions = self._predict_large(features, [p.proposal_boxes for p in large])
            losses.update(self.box_predictor.losses(predictions, large))
        predictions = self._predict_small(features, [p.proposal_boxes for p in small])
        losses.update(self._small_losses(predictions, small))
        if self.needs_lr_features:
            if lr_features is None or (self.needs_sr_targets and sr_targets is None):
                raise ValueError(
                    "FeatSR stage-2 training needs lr_features and sr_targets (FeatSRRCNN makes "
                    "them)"
                )
            target_maps = sr_targets if self.mode.needs_extractor else features
            boxes = [p.proposal_boxes for p in proposals]
            losses.update(self._sr_pair_losses(boxes, lr_features, target_maps))
        return losses

    def sr_pair_features(
        self, boxes: list[Boxes], lr_features, target_maps
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The SR pairs of ``boxes`` (1.0x boxes; the pairs are those whose 0.5x box is small and
        whose 1.0x box is at least ``TARGET_MIN_SIZE``, at most ``MAX_PAIRS_PER_IMAGE`` per image,
        the first): G's inputs on the 0.5x features (base and sub RoI features) and the targets'
        RoI features on ``target_maps`` (T^1.0, or F^1.0 for naive supervision)."""
        lr_boxes = [
            Boxes(
                sr_pair_boxes(
                    b.tensor, self.small_size, self.target_min_size, self.max_pairs_per_image
                )
            )
            for b in boxes
        ]
        # F^0.5 and T^1.0 from the 0.5x box's level. T^1.0 pools the 1.0x maps at the 1.0x box:
        # the 0.5x box at twice the scale, which is the same RoIAlign (exact: powers of two).
        maps, scales = self._base_maps(target_maps)
        target_spec = (maps, [2.0 * s for s in scales])
        lr_base, lr_sub, (target,) = self._pool_generator_inputs(
            lr_features, lr_boxes, extra=[target_spec]
        )
        return lr_base, lr_sub, target

    def _sr_pair_losses(
        self, boxes: list[Boxes], lr_features, target_maps
    ) -> dict[str, torch.Tensor]:
        """Losses of eqs. 4-6 on the (F^0.5, T^1.0) pairs of the sampled proposals (eq. 4 only
        with a supervision that has a content loss)."""
        lr_base, lr_sub, target = self.sr_pair_features(boxes, lr_features, target_maps)
        return self.featsr.sr_losses(lr_base, lr_sub, target, content=self.mode.content)

    def _capped(self, masks: list[torch.Tensor]) -> list[torch.Tensor]:
        """At most ``max_small_per_image`` small proposals per image, the first ones (the RPN's
        proposals come sorted by objectness); -1 keeps them all."""
        return [cap_small(mask, self.max_small_per_image) for mask in masks]

    def _inference(self, features, proposals: list[Instances]) -> list[Instances]:
        boxes = [p.proposal_boxes for p in proposals]
        masks = self._capped(self._small_masks(boxes))
        large_scores, large_deltas = self._predict_large(
            features, [b[~m] for b, m in zip(boxes, masks)]
        )
        small_scores, small_deltas = self._predict_small(
            features, [b[m] for b, m in zip(boxes, masks)]
        )
        mask = cat(masks) if masks else torch.zeros(0, dtype=torch.bool)
        scores = large_scores.new_empty((mask.numel(), large_scores.shape[1]))
        deltas = large_deltas.new_empty((mask.numel(), large_deltas.shape[1]))
        scores[~mask], scores[mask] = large_scores, small_scores
        deltas[~mask], deltas[mask] = large_deltas, small_deltas
        instances, _ = self.box_predictor.inference((scores, deltas), proposals)
        return instances


@ROI_HEADS_REGISTRY.register()
class FeatSRRes5ROIHeads(_FeatSRHeads, Res5ROIHeads):
    """Res5ROIHeads with FeatSR's generator, discriminator and small predictor (C4); ``res5`` is
    built by the Res5ROIHeads that ``MODEL.FEATSR.RES5_HEADS`` names (ResNet's, or MobileNetV2's
    stage5 with ``FeatSRMobileNetV2Res5ROIHeads``)."""

    _REPLICAS = {"res5.": "featsr.small_head.", "box_predictor.": "featsr.small_predictor."}
    _V2_LAYOUT = {**_FeatSRHeads._V2_LAYOUT, "small_res5.": "featsr.small_head."}

    @configurable
    def __init__(self, *, featsr: dict, **kwargs):
        """
        Args:
            featsr: box_branch (a :class:`FeatSRBoxBranch`), sub_features, sub_scales, stage,
                small_size, max_small_per_image, max_pairs_per_image, target_min_size,
                supervision and the pooling parameters (see :func:`_featsr_from_config`).
            kwargs: the arguments of :class:`Res5ROIHeads`.
        """
        super().__init__(**kwargs)
        self._init_featsr(**featsr)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        # The Res5ROIHeads named by MODEL.FEATSR.RES5_HEADS build res5 (and the predictor) as the
        # stage-1 detector's heads did, e.g. MobileNetV2's stage5; the small head replicates it.
        base_heads = ROI_HEADS_REGISTRY.get(cfg.MODEL.FEATSR.RES5_HEADS)
        res5_heads = isinstance(base_heads, type) and issubclass(base_heads, Res5ROIHeads)
        if not res5_heads or issubclass(base_heads, _FeatSRHeads):
            raise ValueError(
                f"MODEL.FEATSR.RES5_HEADS must name a stage-1 Res5ROIHeads (e.g. Res5ROIHeads, "
                f"FeatSRMobileNetV2Res5ROIHeads), not {cfg.MODEL.FEATSR.RES5_HEADS!r}"
            )
        pooling = _pooling_from_config(cfg, input_shape)  # first: it names what it refuses
        ret = base_heads.from_config(cfg, input_shape)
        base = input_shape[ret["in_features"][0]].channels
        ret["featsr"] = _featsr_from_config(
            cfg, input_shape, base, ret["res5"], ret["box_predictor"], pooling
        )
        return ret

    def forward(
        self, images, features, proposals, targets=None, *, lr_features=None, sr_targets=None
    ):
        """:meth:`Res5ROIHeads.forward` with FeatSR's box branch (``_forward_box``); Res5 has no
        box hook of its own. The mask head reads ``res5`` of the foreground proposals in
        training and of the detections at inference, as in Res5ROIHeads.

        Args:
            images, features, proposals, targets: as :meth:`ROIHeads.forward`.
            lr_features, sr_targets: see :meth:`_FeatSRHeads._forward_box`.
        """
        del images
        if not self.training:
            instances = self._forward_box(features, proposals)
            return self.forward_with_given_boxes(features, instances), {}
        proposals = self.label_and_sample_proposals(proposals, targets)
        losses = self._forward_box(
            features, proposals, lr_features=lr_features, sr_targets=sr_targets
        )
        if self.mask_on:
            proposals, _ = select_foreground_proposals(proposals, self.num_classes)
            x = self._shared_roi_transform(
                [features[f] for f in self.in_features], [p.proposal_boxes for p in proposals]
            )
            losses.update(self.mask_head(x, proposals))
        return [], losses

    def _base_maps(self, features):
        return [features[self.in_features[0]]], list(self.pooler_scales)

    def _large_head(self, x):
        return self.res5(x).mean(dim=(2, 3))

    def _small_head(self, x):
        return self.featsr.small_head(x).mean(dim=(2, 3))


@ROI_HEADS_REGISTRY.register()
class FeatSRStandardROIHeads(_FeatSRHeads, StandardROIHeads):
    """StandardROIHeads (FPN, DC5) with FeatSR's generator, discriminator and small predictor;
    its mask and keypoint heads work as in StandardROIHeads."""

    _REPLICAS = {"box_head.": "featsr.small_head.", "box_predictor.": "featsr.small_predictor."}
    _V2_LAYOUT = {**_FeatSRHeads._V2_LAYOUT, "small_box_head.": "featsr.small_head."}

    @configurable
    def __init__(self, *, featsr: dict, **kwargs):
        """
        Args:
            featsr: see :class:`FeatSRRes5ROIHeads`.
            kwargs: the arguments of :class:`StandardROIHeads`.
        """
        super().__init__(**kwargs)
        if self.train_on_pred_boxes:
            raise ValueError(
                "FeatSR heads train the mask and keypoint heads on the sampled proposals: set "
                "MODEL.ROI_BOX_HEAD.TRAIN_ON_PRED_BOXES False"
            )
        self._init_featsr(**featsr)

    @classmethod
    def from_config(cls, cfg, input_shape: dict[str, ShapeSpec]):
        pooling = _pooling_from_config(cfg, input_shape)  # first: it names what it refuses
        ret = StandardROIHeads.from_config(cfg, input_shape)
        channels = input_shape[cfg.MODEL.ROI_HEADS.IN_FEATURES[0]].channels
        ret["featsr"] = _featsr_from_config(
            cfg, input_shape, channels, ret["box_head"], ret["box_predictor"], pooling
        )
        return ret

    def forward(
        self, images, features, proposals, targets=None, *, lr_features=None, sr_targets=None
    ):
        """:meth:`StandardROIHeads.forward`, whose training step also hands the stage-2 SR pairs'
        inputs to the box branch.

        Args:
            images, features, proposals, targets: as :meth:`ROIHeads.forward`.
            lr_features, sr_targets: see :meth:`_FeatSRHeads._forward_box`.
        """
        if not self.training:
            return super().forward(images, features, proposals)
        proposals = self.label_and_sample_proposals(proposals, targets)
        losses = self._forward_box(
            features, proposals, lr_features=lr_features, sr_targets=sr_targets
        )
        losses.update(self._forward_mask(features, proposals))
        losses.update(self._forward_keypoint(features, proposals))
        return [], losses

    def _levels(self, boxes):
        scales = self.pooler_scales
        if len(scales) == 1:
            return None
        min_level, max_level = (round(-math.log2(s)) for s in (scales[0], scales[-1]))
        return assign_boxes_to_levels(
            boxes, min_level, max_level, _CANONICAL_BOX_SIZE, _CANONICAL_LEVEL
        )

    def _base_maps(self, features):
        return [features[f] for f in self.box_in_features], list(self.pooler_scales)

    def _large_head(self, x):
        return self.box_head(x)

    def _small_head(self, x):
        return self.featsr.small_head(x)
