"""FeatSR's RoI head for MMDetection (Noh et al., ICCV 2019, sections 4.2-4.4):
``FeatSRStandardRoIHead``, mmdet's ``StandardRoIHead`` with FeatSR's box branch, for the FPN layout
(``Shared2FCBBoxHead`` on the pyramid) and the C4 layout (mmdet's ``shared_head``, the ``ResLayer``
res5 run per RoI, and a ``BBoxHead`` with average pooling, as in
``faster-rcnn_r50-caffe_c4-1x_coco.py``): in mmdet both layouts are a ``StandardRoIHead``, with or
without a shared head, and so is this one.

Beside the base detector's head (the *large predictor*: ``shared_head`` when there is one, and
``bbox_head``) sits the child ``featsr``, the core's
:class:`~featsr_d2.core.featsr.featsr_box_branch.FeatSRBoxBranch`:

- the SR feature generator G, reading the base-layer RoI feature and the sub (former) layer's RoI
  feature pooled at the same box to the same size; the sub layers are bottom-up stages that
  :class:`~featsr_d2.mmdet.featsr_rcnn.FeatSRFasterRCNN` picks, captures and passes in
  (``sub_feats``), and whose widths and strides it gives this head when it builds it;
- the *small predictor* (``featsr.small_head``: a replica of ``shared_head``, or the identity
  without one; ``featsr.small_predictor``: a replica of ``bbox_head``), initialized from the large
  one by :meth:`init_weights`, and from the large one's weights when a checkpoint without it is
  loaded (the stage-1 detector's; :meth:`_load_from_state_dict`, which logs it);
- the three-layer MLP discriminator D.

Routing (the core's :mod:`~featsr_d2.core.featsr.small_proposals`): a proposal whose sqrt(area)
is below ``small_size`` is small; small proposals go through G and the small predictor, large
ones through the large predictor, and their scores and deltas are merged before mmdet's
per-class NMS (``bbox_head.predict_by_feat``). At inference ``max_small_per_image`` (K) caps the
small proposals per image that take the small path, the K of highest objectness (the RPN's
proposals come sorted); K = 0 is the base detector, -1 keeps them all.

Stages (section 4.3): stage 2 trains G, D and the small predictor with the large predictor frozen
and not run: ``loss_cls_small`` / ``loss_bbox_small`` (the small predictor's ``bbox_head.loss`` on
G(F^1.0) of the small sampled proposals, times ``detection_weight``), ``loss_sr_content`` (eq. 4),
``loss_sr_adversarial`` (eq. 5) and ``loss_discriminator`` (eq. 6) on the SR pairs of the sampled
proposals (``sr_pair_boxes``: 0.5x box small, 1.0x box at least ``target_min_size``, at most
``max_pairs_per_image``, foreground first). Each loss reaches only its own module, so that one
backward pass gives each its gradient and the two optimizers step from it
(:mod:`featsr_d2.mmdet.optim_wrapper`). Stage 3 fine-tunes both predictors with G and D frozen:
the small one on G's features of small proposals, the large one (``loss_cls`` / ``loss_bbox``) on
large proposals only. ``supervision`` is a row of the core's table
(:mod:`featsr_d2.core.featsr.supervision`): ``extractor`` (the paper's), ``naive``, ``none``,
``detection_only`` and the ``identity`` control.

Pooling: the base, sub and target RoI features of a set of RoIs come from one call of the core's
:func:`~featsr_d2.core.layers.multimap_roi_align`, with the RoIAlign parameters of
``bbox_roi_extractor`` (mmcv's ``RoIAlign``, average mode: output size, sampling ratio,
``aligned``, one scale per ``featmap_strides`` level) and its level rule
(``SingleRoIExtractor.map_roi_levels``); the large path is mmdet's own ``_bbox_forward``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from mmcv.ops import RoIAlign
from mmdet.models.roi_heads import StandardRoIHead
from mmdet.models.roi_heads.roi_extractors import SingleRoIExtractor
from mmdet.models.utils import empty_instances, unpack_gt_instances
from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox2roi
from mmengine.logging import print_log
from torch import nn

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

__all__ = ["FEATSR_STAGES", "FeatSRStandardRoIHead"]

FEATSR_STAGES = (2, 3)


@MODELS.register_module()
class FeatSRStandardRoIHead(StandardRoIHead):
    """StandardRoIHead (FPN, or C4 with a ``shared_head``) with FeatSR's generator, discriminator
    and small predictor. Built by :class:`~featsr_d2.mmdet.featsr_rcnn.FeatSRFasterRCNN`, which
    fills ``sub_channels``, ``sub_strides`` and ``sub_of_level``."""

    # The large predictor's parts and their replicas in the small predictor (state-dict prefixes).
    _REPLICAS = {"shared_head.": "featsr.small_head.", "bbox_head.": "featsr.small_predictor."}
    # 2: a FeatSR head's checkpoint (has its small predictor); 1 or none: StandardRoIHead's.
    _version = 2

    def __init__(
        self,
        *,
        stage: int = 2,
        supervision: str = "extractor",
        small_size: float = 32,
        target_min_size: float = 16,
        max_small_per_image: int = -1,
        max_pairs_per_image: int = -1,
        content_weight: float = 1.0,
        adversarial_weight: float = 0.01,
        detection_weight: float = 1.0,
        generator: dict | None = None,
        discriminator: dict | None = None,
        sub_channels: Sequence[int],
        sub_strides: Sequence[int],
        sub_of_level: Sequence[int],
        **kwargs,
    ):
        """
        Args:
            stage: the paper's phase: 2 trains G, D and the small predictor; 3 fine-tunes both
                predictors.
            supervision: stage 2's supervision mode (the core's table).
            small_size: proposals with sqrt(area) below it (input pixels) are small.
            target_min_size: SR pairs whose 1.0x box is smaller are discarded.
            max_small_per_image: at inference, at most this many small proposals per image (the
                RPN's best) take the small path; -1 all, 0 none (the base detector).
            max_pairs_per_image: at most this many SR pairs per image; -1 all.
            content_weight, adversarial_weight: weights of eqs. 4 and 5 in G's objective.
            detection_weight: weight of the small predictor's losses.
            generator: keyword arguments of the core's ``SRFeatureGenerator`` but its widths
                (``num_blocks``, ``hidden_channels``, ``kernel_size``, ``block``,
                ``chunk_size``); defaults: 4 blocks, 256 hidden channels, 3x3, basic, 256.
            discriminator: ``hidden_dim`` and ``pool_size`` of ``SRFeatureDiscriminator``;
                defaults 1024 and 4.
            sub_channels, sub_strides: width and stride of each sub layer (a bottom-up stage).
            sub_of_level: the sub layer (an index into the two above) of each
                ``bbox_roi_extractor`` level.
            kwargs: the arguments of mmdet's ``StandardRoIHead``.
        """
        super().__init__(**kwargs)
        self.mode = supervision_mode(supervision)  # raises for an unknown mode
        if stage not in FEATSR_STAGES:
            raise ValueError(f"FeatSR's stage must be one of {FEATSR_STAGES}, got {stage!r}")
        if self.with_mask:
            raise ValueError(
                "FeatSRStandardRoIHead refines the box branch of a Faster R-CNN: a mask head is "
                "not supported"
            )
        extractor = self.bbox_roi_extractor
        layer = extractor.roi_layers[0]
        if type(extractor) is not SingleRoIExtractor or not isinstance(layer, RoIAlign):
            raise ValueError(
                "FeatSR pools with RoIAlign: bbox_roi_extractor must be a SingleRoIExtractor with "
                f"roi_layer RoIAlign, not {type(extractor).__name__} with {type(layer).__name__}"
            )
        if layer.pool_mode != "avg":
            raise ValueError(f"FeatSR pools with RoIAlign's average mode, not {layer.pool_mode!r}")
        num_levels = len(extractor.featmap_strides)
        if len(sub_of_level) != num_levels or len(sub_channels) != len(sub_strides):
            raise ValueError(
                f"sub_of_level {list(sub_of_level)} must name one sub layer per "
                f"bbox_roi_extractor level {list(extractor.featmap_strides)}, of "
                f"{len(sub_channels)} (sub_channels) and {len(sub_strides)} (sub_strides)"
            )
        self.stage = stage
        self.supervision = supervision
        self.small_size = small_size
        self.target_min_size = target_min_size
        self.max_small_per_image = max_small_per_image
        self.max_pairs_per_image = max_pairs_per_image
        self.sub_channels = list(sub_channels)
        self.sub_strides = list(sub_strides)
        self.sub_of_level = list(sub_of_level)
        # RoIAlign of the base, sub and target RoI features: bbox_roi_extractor's.
        self.roi_output_size = tuple(layer.output_size)
        self.sampling_ratio = layer.sampling_ratio
        self.aligned = layer.aligned
        self.base_scales = [1.0 / s for s in extractor.featmap_strides]
        base_channels = extractor.out_channels
        self.featsr = FeatSRBoxBranch(
            generator=SRFeatureGenerator(
                base_channels=base_channels,
                sub_channels=self.sub_channels,
                **{"num_blocks": 4, "hidden_channels": 256, "chunk_size": 256, **(generator or {})},
            ),
            discriminator=SRFeatureDiscriminator(
                input_shape=(base_channels, *self.roi_output_size),
                **{"hidden_dim": 1024, "pool_size": 4, **(discriminator or {})},
            ),
            small_head=copy.deepcopy(self.shared_head) if self.with_shared_head else nn.Identity(),
            small_predictor=copy.deepcopy(self.bbox_head),
            content_weight=content_weight,
            adversarial_weight=adversarial_weight,
            detection_weight=detection_weight,
        )
        for module in self.frozen_modules():
            module.requires_grad_(False)

    # ------------------------------------------------------------------------------------------
    # What each phase trains

    def _large_modules(self) -> list[nn.Module]:
        return [self.shared_head, self.bbox_head] if self.with_shared_head else [self.bbox_head]

    def frozen_modules(self) -> list[nn.Module]:
        """The parts this phase does not train (kept in eval mode by the detector): the large
        predictor in stage 2, and G and D where the supervision trains neither (D alone for
        ``detection_only``); G and D in stage 3."""
        g, d = self.featsr.generator, self.featsr.discriminator
        if self.stage == 2:
            frozen = [] if self.mode.generator else [g]
            return [*self._large_modules(), *frozen] + ([] if self.mode.discriminator else [d])
        return [g, d]

    def modules_frozen_at_init(self) -> list[nn.Module]:
        """Frozen parts that keep their initialization rather than loaded weights: in stage 2, G
        where the supervision does not train it (the ``identity`` control: the identity) and D
        where it does not train it (``detection_only``, ``identity``: unused)."""
        if self.stage != 2:
            return []
        g, d = self.featsr.generator, self.featsr.discriminator
        return ([] if self.mode.generator else [g]) + ([] if self.mode.discriminator else [d])

    @property
    def needs_lr_features(self) -> bool:
        """Whether training needs the trunk's features of the 0.5x images (SR pairs)."""
        return self.stage == 2 and self.mode.pairs

    @property
    def needs_sr_targets(self) -> bool:
        """Whether training needs the SR target extractor's maps of the 1.0x images."""
        return self.stage == 2 and self.mode.needs_extractor

    # ------------------------------------------------------------------------------------------
    # Weights

    def init_weights(self) -> None:
        """mmengine's initialization, then the small predictor as a copy of the large one (the
        paper initializes it so; a checkpoint loaded later replaces both)."""
        super().init_weights()
        large = self._large_modules()
        small = [self.featsr.small_head, self.featsr.small_predictor][-len(large) :]
        for source, replica in zip(large, small):
            replica.load_state_dict(source.state_dict())

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        """A state dict older than version 2 (mmdet's StandardRoIHead's: the stage-1 detector)
        has no small predictor: its missing entries are copied from the large predictor's, as
        the paper initializes it, and the log says so. From version 2 on a missing small
        predictor is reported as missing."""
        version = local_metadata.get("version", None)
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
                print_log(
                    "FeatSR head: the checkpoint has no small predictor (the stage-1 detector's); "
                    f"initialized {', '.join(s + '*' for _, s in sorted(filled))} from "
                    f"{', '.join(la + '*' for la, _ in sorted(filled))}",
                    logger="current",
                )
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )

    # ------------------------------------------------------------------------------------------
    # Pooling

    def _levels(self, rois: torch.Tensor) -> torch.Tensor | None:
        """The ``bbox_roi_extractor`` level of each RoI (mmdet's rule); None for one level."""
        if len(self.base_scales) == 1:
            return None
        return self.bbox_roi_extractor.map_roi_levels(rois, len(self.base_scales))

    def _pool(self, specs, rois: torch.Tensor, levels) -> list[torch.Tensor]:
        """Pools ``rois`` from each ``(maps, scales)`` of ``specs`` in one RoIAlign call."""
        return multimap_roi_align(
            [maps for maps, _ in specs],
            rois,
            self.roi_output_size,
            [scales for _, scales in specs],
            self.sampling_ratio,
            self.aligned,
            levels=levels,
        )

    def _base_spec(self, x: Sequence[torch.Tensor]):
        return list(x[: len(self.base_scales)]), list(self.base_scales)

    def generator_inputs(
        self,
        x: Sequence[torch.Tensor],
        sub_feats: Sequence[torch.Tensor],
        rois: torch.Tensor,
        extra=(),
    ) -> tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]:
        """G's base and sub RoI features of ``rois`` on ``x`` and ``sub_feats`` (sub at G's input
        width), and the RoI features of each ``(maps, scales)`` entry of ``extra`` (a RoI on
        level k reads level k)."""
        levels = self._levels(rois)
        generator = self.featsr.generator
        if generator.sub_projections is None:
            subs = [sub_feats[i] for i in self.sub_of_level]
            scales = [1.0 / self.sub_strides[i] for i in self.sub_of_level]
            base, sub, *rest = self._pool(
                [self._base_spec(x), (subs, scales), *extra], rois, levels
            )
            return base, sub, rest
        base, *rest = self._pool([self._base_spec(x), *extra], rois, levels)
        # The sub layers differ in width: each pools its own RoIs (those on the levels it serves)
        # and G projects them; each runs, with no RoI if need be, so that each projection gets
        # a gradient.
        if levels is None:
            levels = torch.zeros(len(rois), dtype=torch.long, device=rois.device)
        source = torch.as_tensor(self.sub_of_level, device=rois.device)[levels]
        sub = None
        for index, (sub_map, stride) in enumerate(zip(sub_feats, self.sub_strides)):
            mask = source == index
            (pooled,) = self._pool([([sub_map], [1.0 / stride])], rois[mask], None)
            pooled = generator.project_sub(index, pooled)
            if sub is None:
                sub = pooled.new_zeros((len(rois), *pooled.shape[1:]))
            sub[mask] = pooled
        return base, sub, rest

    # ------------------------------------------------------------------------------------------
    # Predictions

    def _predict_small(self, x, sub_feats, rois: torch.Tensor):
        """The small predictor's (cls_score, bbox_pred) of ``rois`` through G."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.stage == 2):
            base, sub, _ = self.generator_inputs(x, sub_feats, rois)
            features = self.featsr(base, sub)
        return self.featsr.small_predictor(self.featsr.small_head(features))

    def routed_bbox_forward(self, x, sub_feats, proposals: Sequence[torch.Tensor]):
        """Scores and deltas of every proposal (small ones through G and the small predictor, at
        most ``max_small_per_image`` per image; the others through the large predictor), in the
        proposals' order, and their RoIs."""
        masks = [
            cap_small(small_mask(p, self.small_size), self.max_small_per_image) for p in proposals
        ]
        rois = bbox2roi(list(proposals))
        mask = torch.cat(masks) if masks else torch.zeros(0, dtype=torch.bool)
        large = self._bbox_forward(x, rois[~mask])
        small_scores, small_deltas = self._predict_small(x, sub_feats, rois[mask])
        scores = small_scores.new_empty((len(rois), small_scores.shape[1]))
        deltas = small_deltas.new_empty((len(rois), small_deltas.shape[1]))
        scores[~mask], scores[mask] = large["cls_score"], small_scores
        deltas[~mask], deltas[mask] = large["bbox_pred"], small_deltas
        return scores, deltas, rois

    def forward(self, x, rpn_results_list, batch_data_samples=None, *, sub_feats):
        """The routed (cls_score, bbox_pred) of the proposals (mmdet's tensor mode)."""
        scores, deltas, _ = self.routed_bbox_forward(
            x, sub_feats, [r.bboxes for r in rpn_results_list]
        )
        return scores, deltas

    def predict(self, x, rpn_results_list, batch_data_samples, rescale: bool = False, *, sub_feats):
        """Detections of each image: the routed predictions through ``bbox_head``'s per-class
        NMS (``predict_by_feat``), as :meth:`StandardRoIHead.predict_bbox` makes them."""
        metas = [sample.metainfo for sample in batch_data_samples]
        proposals = [r.bboxes for r in rpn_results_list]
        if sum(len(p) for p in proposals) == 0:
            return empty_instances(
                metas,
                x[0].device,
                task_type="bbox",
                box_type=self.bbox_head.predict_box_type,
                num_classes=self.bbox_head.num_classes,
                score_per_cls=self.test_cfg is None,
            )
        scores, deltas, rois = self.routed_bbox_forward(x, sub_feats, proposals)
        counts = tuple(len(p) for p in proposals)
        return self.bbox_head.predict_by_feat(
            rois=rois.split(counts),
            cls_scores=scores.split(counts),
            bbox_preds=deltas.split(counts),
            batch_img_metas=metas,
            rcnn_test_cfg=self.test_cfg,
            rescale=rescale,
        )

    # ------------------------------------------------------------------------------------------
    # Training

    def _sample(self, x, rpn_results_list, batch_data_samples):
        """Assigns and samples the proposals as :meth:`StandardRoIHead.loss` does."""
        gt_instances, gt_instances_ignore, _ = unpack_gt_instances(batch_data_samples)
        results = []
        for i, rpn_results in enumerate(rpn_results_list):
            rpn_results.priors = rpn_results.pop("bboxes")
            assign = self.bbox_assigner.assign(rpn_results, gt_instances[i], gt_instances_ignore[i])
            results.append(
                self.bbox_sampler.sample(
                    assign, rpn_results, gt_instances[i], feats=[f[i][None] for f in x]
                )
            )
        return results

    @staticmethod
    def _predictor_losses(predictor, predictions, rois, targets, keep) -> dict:
        """``predictor.loss`` (mmdet's BBoxHead) of the RoIs in ``keep``, with ``loss_cls``
        present (zero, with a graph) when there are none."""
        cls_score, bbox_pred = predictions
        losses = predictor.loss(cls_score, bbox_pred, rois[keep], *(t[keep] for t in targets))
        losses.setdefault("loss_cls", cls_score.sum() * 0.0)
        return losses

    def loss(
        self,
        x,
        rpn_results_list,
        batch_data_samples,
        *,
        sub_feats,
        lr_feats=None,
        lr_sub_feats=None,
        target_feats=None,
    ) -> dict:
        """The losses of this phase on the sampled proposals.

        Args:
            x, rpn_results_list, batch_data_samples: as :meth:`StandardRoIHead.loss`.
            sub_feats: the sub layers' maps of the 1.0x images.
            lr_feats, lr_sub_feats: in stage 2 with SR pairs, ``x`` and ``sub_feats`` of the 0.5x
                images.
            target_feats: in stage 2 with the extractor's targets, its maps of the 1.0x images
                (as ``x``).
        """
        sampling_results = self._sample(x, rpn_results_list, batch_data_samples)
        rois = bbox2roi([res.priors for res in sampling_results])
        targets = self.bbox_head.get_targets(sampling_results, self.train_cfg, concat=True)
        small = small_mask(rois[:, 1:], self.small_size)
        losses = {}
        if self.stage == 3:  # the large predictor, on large proposals only
            large = self._bbox_forward(x, rois[~small])
            predictions = (large["cls_score"], large["bbox_pred"])
            losses.update(
                self._predictor_losses(self.bbox_head, predictions, rois, targets, ~small)
            )
        predictions = self._predict_small(x, sub_feats, rois[small])
        small_losses = self._predictor_losses(
            self.featsr.small_predictor, predictions, rois, targets, small
        )
        weight = self.featsr.detection_weight
        for key, value in small_losses.items():
            losses[f"{key}_small"] = value * weight if "loss" in key else value
        if self.needs_lr_features:
            if lr_feats is None or lr_sub_feats is None:
                raise ValueError("FeatSR stage-2 training needs the 0.5x images' features")
            target_maps = target_feats if self.mode.needs_extractor else x
            if target_maps is None:
                raise ValueError("FeatSR's extractor supervision needs the SR target maps")
            boxes = [res.priors for res in sampling_results]
            losses.update(self._sr_pair_losses(boxes, lr_feats, lr_sub_feats, target_maps))
        return losses

    def sr_pair_features(self, boxes, lr_feats, lr_sub_feats, target_maps):
        """The SR pairs of ``boxes`` (each image's 1.0x boxes; pairs: 0.5x box small, 1.0x box at
        least ``target_min_size``, at most ``max_pairs_per_image`` per image, the first): G's
        inputs on the 0.5x features and the targets' RoI features on ``target_maps`` (T^1.0, or
        F^1.0 for naive supervision), all on the 0.5x box's level."""
        lr_rois = bbox2roi(
            [
                sr_pair_boxes(b, self.small_size, self.target_min_size, self.max_pairs_per_image)
                for b in boxes
            ]
        )
        # T^1.0 pools the 1.0x maps at the 1.0x box: the 0.5x box at twice the scale, which is
        # the same RoIAlign (exact: powers of two).
        maps, scales = self._base_spec(target_maps)
        target_spec = (maps, [2.0 * s for s in scales])
        lr_base, lr_sub, (target,) = self.generator_inputs(
            lr_feats, lr_sub_feats, lr_rois, extra=[target_spec]
        )
        return lr_base, lr_sub, target

    def _sr_pair_losses(self, boxes, lr_feats, lr_sub_feats, target_maps) -> dict:
        """Losses of eqs. 4-6 on the (F^0.5, T^1.0) pairs (eq. 4 only with a supervision that has
        a content loss)."""
        lr_base, lr_sub, target = self.sr_pair_features(boxes, lr_feats, lr_sub_feats, target_maps)
        return self.featsr.sr_losses(lr_base, lr_sub, target, content=self.mode.content)
