"""Exact caching of what FeatSR's stages 2 and 3 never change, and training of the heads from it.

In the paper's stages 2 and 3 the backbone and the RPN are frozen (eval mode, no gradient), so for
a dataset without augmentation everything the ROI heads read is fixed per image: the backbone's
features F^1.0 of the base and sub layers, the features of the 0.5x image F^0.5, the SR target
extractor's T^1.0, and the RPN's proposals. :func:`cache_features` computes them once per image,
through the model's own trunk (:meth:`FeatSRRCNN.frozen_outputs
<featsr_d2.modeling.meta_arch.featsr_rcnn.FeatSRRCNN.frozen_outputs>`);
:class:`CachedHeadsTrainer` then trains only the ROI heads on batches assembled from the cache, and
:func:`predict_cached` runs the heads' inference on it. This is what
:func:`FeatSRRCNN.forward <featsr_d2.modeling.meta_arch.featsr_rcnn.FeatSRRCNN.forward>` computes,
minus the frozen work, up to:

- the storage dtype (float16 by default: ``tests/engine/test_feature_cache.py`` bounds the change
  of the heads' losses and detections against the live model);
- batching: every image is computed alone, so a batch of images of one size is exact, and images of
  different sizes (which the live model would zero-pad to a common size before the backbone) are
  refused in one training batch. Evaluation runs image by image and has no such limit.

Only the maps the heads read are kept: the ROI heads' input levels and the sub layers, at 1.0x and
0.5x, and the extractor's maps of the input levels, for each pooling placement asked for
(``"aligned"``, the default, and ``"unaligned"``, the previous one: the study compares them).

A chunk holds tensors, numbers, strings and plain containers only, and is read with
``torch.load(weights_only=True)``, which constructs nothing else: a chunk that someone planted in
the folder cannot run code when the study resumes. A chunk that is not what the cache wrote (it
does not read that way, or holds anything else) is refused (:class:`FeatureCacheError`), naming it.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import torch
from detectron2.modeling.postprocessing import detector_postprocess
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from featsr_d2.engine.trainer import FeatSRTrainer
from featsr_d2.utils.file_io import atomic_write

__all__ = [
    "CachedHeadsTrainer",
    "CachedImage",
    "FeatureCacheError",
    "PLACEMENTS",
    "cache_features",
    "channel_scales",
    "collate_cached",
    "load_feature_cache",
    "predict_cached",
]

logger = logging.getLogger(__name__)

# 3: the extractor's targets per placement; 2: chunks of plain dicts, read with weights_only=True
# (1: pickled CachedImage objects).
CACHE_VERSION = 3
# The SR target extractor's pooling placements a cache can hold (MODEL.FEATSR.EXTRACTOR_ALIGNED).
PLACEMENTS = {"aligned": True, "unaligned": False}


class FeatureCacheError(ValueError):
    """A file in a feature-cache folder that is not a chunk the cache wrote."""


def placement_name(aligned: bool) -> str:
    """``"aligned"`` or ``"unaligned"``: the cache's name of an extractor placement."""
    return "aligned" if aligned else "unaligned"


@dataclass
class CachedImage:
    """What the ROI heads of a frozen-trunk FeatSR model read for one image.

    Attributes:
        image_id, height, width: the dataset record's id and original size.
        image_size: (h, w) of the network input (after the test-time resize, before padding).
        features: the backbone's maps the heads read (``(1, C, H, W)``, storage dtype).
        lr_features: the same maps on the 0.5x image, or None.
        sr_targets: per placement (``"aligned"``, ``"unaligned"``), the SR target extractor's maps
            of the heads' input levels, or None.
        proposal_boxes, objectness_logits: the RPN's proposals on the input (sorted by objectness).
        gt_boxes, gt_classes: the ground truth on the input (empty for an image without any).
    """

    image_id: str | int
    height: int
    width: int
    image_size: tuple[int, int]
    features: dict[str, torch.Tensor]
    lr_features: dict[str, torch.Tensor] | None
    sr_targets: dict[str, dict[str, torch.Tensor]] | None
    proposal_boxes: torch.Tensor
    objectness_logits: torch.Tensor
    gt_boxes: torch.Tensor
    gt_classes: torch.Tensor


def _heads_keys(model) -> tuple[list[str], list[str]]:
    """The backbone outputs the heads read (input levels and sub layers), and the input levels."""
    heads = model.roi_heads
    levels = list(heads.in_features)
    return list(dict.fromkeys(levels + list(heads.sub_features))), levels


def _keep(maps: dict[str, torch.Tensor], keys: Iterable[str], dtype) -> dict[str, torch.Tensor]:
    return {k: maps[k].to(dtype).contiguous() for k in keys}


@torch.no_grad()
def _cache_one(
    model, inputs: dict, *, with_pairs: bool, placements: Sequence[str], dtype
) -> CachedImage:
    keys, levels = _heads_keys(model)
    trunk = model.frozen_outputs(
        [inputs],
        lr_features=with_pairs,
        sr_targets=False,
        target_placements=[PLACEMENTS[p] for p in placements] if with_pairs else (),
    )
    lr_features = sr_targets = None
    if with_pairs:
        lr_features = _keep(trunk.lr_features, keys, dtype)
        sr_targets = {p: _keep(trunk.extra_sr_targets[PLACEMENTS[p]], levels, dtype)
                      for p in placements}  # fmt: skip
    p = trunk.proposals[0]
    if "instances" in inputs:
        gt = inputs["instances"]
        gt_boxes, gt_classes = gt.gt_boxes.tensor.clone(), gt.gt_classes.clone()
    else:
        gt_boxes, gt_classes = torch.zeros(0, 4), torch.zeros(0, dtype=torch.long)
    return CachedImage(
        image_id=inputs["image_id"],
        height=int(inputs["height"]),
        width=int(inputs["width"]),
        image_size=tuple(trunk.images.image_sizes[0]),
        features=_keep(trunk.features, keys, dtype),
        lr_features=lr_features,
        sr_targets=sr_targets,
        proposal_boxes=p.proposal_boxes.tensor.clone(),
        objectness_logits=p.objectness_logits.clone(),
        gt_boxes=gt_boxes,
        gt_classes=gt_classes,
    )


def _is_maps(value: Any, optional: bool = False) -> bool:
    if value is None:
        return optional
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()
    )


# What each CachedImage field holds in a chunk.
_FIELD_CHECKS: dict[str, Callable[[Any], bool]] = {
    "image_id": lambda v: isinstance(v, (str, int)) and not isinstance(v, bool),
    "height": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "width": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "image_size": lambda v: (
        isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(x, int) for x in v)
    ),
    "features": _is_maps,
    "lr_features": lambda v: _is_maps(v, optional=True),
    "sr_targets": lambda v: (
        v is None
        or (isinstance(v, dict) and all(k in PLACEMENTS and _is_maps(m) for k, m in v.items()))
    ),
    "proposal_boxes": lambda v: isinstance(v, torch.Tensor),
    "objectness_logits": lambda v: isinstance(v, torch.Tensor),
    "gt_boxes": lambda v: isinstance(v, torch.Tensor),
    "gt_classes": lambda v: isinstance(v, torch.Tensor),
}


def _write_chunk(path: str, meta: dict, chunk: list[CachedImage]) -> None:
    images = [{f.name: getattr(c, f.name) for f in fields(CachedImage)} for c in chunk]
    atomic_write(path, lambda f: torch.save({"meta": meta, "images": images}, f), binary=True)


def _read_chunk(path: str) -> tuple[dict, list[CachedImage]]:
    """A chunk's meta and images, read with ``weights_only=True`` and checked field by field.

    Raises:
        FeatureCacheError: ``path`` is not a chunk the cache wrote.
    """
    fix = (
        f"Delete it (rm {path}; a cache of an older featsr_d2: the whole folder) and run again: "
        "the cache recomputes it. A chunk that featsr_d2 did not write may have been put there to "
        "run code when the cache is read."
    )
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses anything but tensors and plain containers
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise FeatureCacheError(
            f"{path}: not a feature-cache chunk that featsr_d2 wrote ({type(e).__name__}: "
            f"{reason}); chunks of cache version {CACHE_VERSION} hold only tensors, numbers and "
            f"strings. {fix}"
        ) from None
    problem = None
    if not isinstance(saved, dict) or set(saved) != {"meta", "images"}:
        problem = "it is not a dict of 'meta' and 'images'"
    elif not isinstance(saved["meta"], dict) or not isinstance(saved["images"], list):
        problem = "its 'meta' is not a dict or its 'images' not a list"
    else:
        for k, image in enumerate(saved["images"]):
            if not isinstance(image, dict) or set(image) != set(_FIELD_CHECKS):
                problem = f"image {k} does not hold the fields {sorted(_FIELD_CHECKS)}"
                break
            bad = [name for name, ok in _FIELD_CHECKS.items() if not ok(image[name])]
            if bad:
                problem = f"image {k} has fields of the wrong type: {bad}"
                break
    if problem is not None:
        raise FeatureCacheError(
            f"{path}: not a feature-cache chunk that featsr_d2 wrote ({problem}). {fix}"
        )
    images = [CachedImage(**dict(i, image_size=tuple(i["image_size"]))) for i in saved["images"]]
    return saved["meta"], images


def cache_features(
    model,
    inputs: Sequence[dict] | Callable[[int], dict],
    path: str,
    *,
    num_images: int | None = None,
    with_pairs: bool,
    placements: Sequence[str] = ("aligned",),
    dtype: torch.dtype = torch.float16,
    chunk_size: int = 100,
    log_every: int = 100,
) -> list[CachedImage]:
    """Computes (or loads) the cache of a dataset for a FeatSR model with a frozen trunk.

    Args:
        model: a :class:`FeatSRRCNN` holding the frozen backbone and RPN (its heads say which maps
            they read); put in eval mode here.
        inputs: the mapped dataset dicts (with ``instances`` for training), or a function from an
            index to one (mapping lazily keeps memory low).
        path: a folder; the cache goes there in chunks of ``chunk_size`` images, each written
            atomically, so that a killed run resumes at its last chunk (a chunk it did not write
            is refused: :class:`FeatureCacheError`).
        num_images: how many images (default ``len(inputs)``).
        with_pairs: also cache F^0.5 and T^1.0 (stage-2 training).
        placements: with pairs, the extractor's placements to cache (keys of
            :data:`PLACEMENTS`).
        dtype: storage dtype of the maps.

    Returns:
        the cached images, in order.
    """
    get = inputs if callable(inputs) else inputs.__getitem__
    total = len(inputs) if num_images is None else num_images
    model.eval()
    os.makedirs(path, exist_ok=True)
    unknown = [p for p in placements if p not in PLACEMENTS]
    if unknown:
        raise ValueError(f"unknown extractor placements {unknown}: choose among {list(PLACEMENTS)}")
    placements = sorted(placements) if with_pairs else []
    meta = {"version": CACHE_VERSION, "with_pairs": with_pairs, "placements": placements,
            "dtype": str(dtype)}  # fmt: skip
    cached: list[CachedImage] = []
    start = time.perf_counter()
    for first in range(0, total, chunk_size):
        chunk_path = os.path.join(path, f"chunk_{first:06d}.pt")
        count = min(chunk_size, total - first)
        if os.path.exists(chunk_path):
            saved_meta, saved = _read_chunk(chunk_path)
            if saved_meta == meta and len(saved) == count:
                cached.extend(saved)
                continue
            logger.warning("feature cache %s was made otherwise (%s): recomputing", chunk_path,
                           saved_meta)  # fmt: skip
        chunk = [_cache_one(model, get(i), with_pairs=with_pairs, placements=placements,
                            dtype=dtype) for i in range(first, first + count)]  # fmt: skip
        _write_chunk(chunk_path, meta, chunk)
        cached.extend(chunk)
        done = first + count
        if done % log_every < chunk_size or done == total:
            elapsed = time.perf_counter() - start
            logger.info("feature cache %s: %d / %d images, %.0f s", path, done, total, elapsed)
    return cached


def load_feature_cache(path: str) -> list[CachedImage]:
    """Every image of a cache folder written by :func:`cache_features`, in order."""
    names = sorted(n for n in os.listdir(path) if n.startswith("chunk_") and n.endswith(".pt"))
    if not names:
        raise FileNotFoundError(f"no feature cache in {path}: run cache_features first")
    images: list[CachedImage] = []
    for name in names:
        images.extend(_read_chunk(os.path.join(path, name))[1])
    return images


def _stack(maps: Sequence[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.cat([m[k] for m in maps]).float() for k in maps[0]}


def collate_cached(
    batch: Sequence[CachedImage],
    *,
    with_pairs: bool,
    placement: str | None = "aligned",
    target_scale: dict[str, torch.Tensor] | None = None,
):
    """The heads' inputs for a batch of cached images of one input size: features, proposals,
    ground truth, and (``with_pairs``) F^0.5 and, unless ``placement`` is None, the extractor's
    T^1.0 of that placement, each level's channels multiplied by ``target_scale[level]`` when given
    (the study's rescaled arm)."""
    shapes = {tuple(next(iter(c.features.values())).shape[-2:]) for c in batch}
    if len(shapes) > 1:
        ids = [c.image_id for c in batch]
        raise ValueError(
            f"cached images {ids} have different feature sizes {sorted(shapes)}: the cache holds "
            "each image computed alone, so a batch must share one input size (fix the input size "
            "with INPUT.MIN_SIZE_TEST / MAX_SIZE_TEST, or train with one image per batch)"
        )
    features = _stack([c.features for c in batch])
    proposals, targets = [], []
    for c in batch:
        p = Instances(c.image_size)
        p.proposal_boxes = Boxes(c.proposal_boxes)
        p.objectness_logits = c.objectness_logits
        proposals.append(p)
        t = Instances(c.image_size)
        t.gt_boxes = Boxes(c.gt_boxes)
        t.gt_classes = c.gt_classes
        targets.append(t)
    lr_features = sr_targets = None
    if with_pairs:
        if any(c.lr_features is None for c in batch):
            raise ValueError("this cache has no 0.5x features: make it with with_pairs=True")
        if placement is not None and any(placement not in c.sr_targets for c in batch):
            raise ValueError(
                f"this cache has no {placement!r} SR targets (it has {sorted(batch[0].sr_targets)})"
                f": make it with placements including {placement!r}"
            )
        lr_features = _stack([c.lr_features for c in batch])
    if with_pairs and placement is not None:
        sr_targets = _stack([c.sr_targets[placement] for c in batch])
        if target_scale is not None:
            sr_targets = {k: v * target_scale[k].view(1, -1, 1, 1) for k, v in sr_targets.items()}
    return features, proposals, targets, lr_features, sr_targets


def channel_scales(
    cache: Sequence[CachedImage], placement: str = "aligned"
) -> dict[str, torch.Tensor]:
    """Per level and channel, RMS(F^1.0) / RMS(T^1.0 of ``placement``) over every position of
    every cached image: the factors that bring the extractor's targets to the scale of the
    backbone's own features (the study's ``extractor_rescaled`` arm, beyond the paper)."""
    sums: dict[str, list[torch.Tensor]] = {}
    for c in cache:
        for level, target in c.sr_targets[placement].items():
            f, t = c.features[level].double(), target.double()
            square = [f.square().sum(dim=(0, 2, 3)), t.square().sum(dim=(0, 2, 3))]
            if level in sums:
                square = [a + b for a, b in zip(sums[level], square)]
            sums[level] = square
    return {k: (f / t.clamp(min=1e-12)).sqrt().float() for k, (f, t) in sums.items()}


class CachedHeadsTrainer:
    """Trains a FeatSR model's ROI heads (stage 2 or 3) from a feature cache, with the optimizers
    and schedule :class:`~featsr_d2.engine.FeatSRTrainer` builds from the config: SGD over what the
    phase trains, the discriminator's own Adam, Detectron2's warmup and steps, ``SOLVER.MAX_ITER``
    iterations of ``SOLVER.IMS_PER_BATCH`` images.

    Images are drawn in epochs, each a permutation from ``seed``; the heads' proposal sampling
    draws from torch's generator, seeded with ``seed`` before the first iteration. Two models
    trained with the same seed on the same cache therefore see the same images and, as long as
    their phases draw alike, the same sampled proposals (paired arms).
    """

    def __init__(
        self,
        cfg,
        model,
        cache: Sequence[CachedImage],
        *,
        seed: int,
        target_scale: dict[str, torch.Tensor] | None = None,
    ):
        """
        Args:
            cfg, model: the phase's config and model (its extractor placement,
                ``MODEL.FEATSR.EXTRACTOR_ALIGNED``, picks the cached targets).
            cache: the training images' cache.
            seed: of the image order and the proposal sampling.
            target_scale: per level, channel factors of the targets (:func:`channel_scales`).
        """
        self.cfg = cfg
        self.model = model
        self.cache = cache
        self.seed = seed
        self.optimizer = FeatSRTrainer.build_optimizer(cfg, model)
        self.optimizer_d = FeatSRTrainer.build_discriminator_optimizer(cfg, model)
        self.scheduler = FeatSRTrainer.build_lr_scheduler(cfg, self.optimizer)
        self.with_pairs = model.roi_heads.needs_lr_features
        aligned = cfg.MODEL.FEATSR.EXTRACTOR_ALIGNED
        self.placement = placement_name(aligned) if model.roi_heads.needs_sr_targets else None
        self.target_scale = target_scale

    def _batches(self) -> Iterable[list[int]]:
        rng = np.random.default_rng(self.seed)
        batch = self.cfg.SOLVER.IMS_PER_BATCH
        order: list[int] = []
        while True:
            while len(order) < batch:
                order.extend(rng.permutation(len(self.cache)).tolist())
            yield order[:batch]
            order = order[batch:]

    def train(self, log_every: int = 50, label: str = "") -> dict[str, float]:
        """Runs ``SOLVER.MAX_ITER`` iterations; returns the mean of each loss over the last
        ``log_every`` of them."""
        max_iter = self.cfg.SOLVER.MAX_ITER
        self.model.train()
        torch.manual_seed(self.seed)
        history: dict[str, list[float]] = {}
        start = time.perf_counter()
        with EventStorage(0) as storage:
            for it, indices in zip(range(max_iter), self._batches()):
                storage.iter = it
                batch = [self.cache[i] for i in indices]
                features, proposals, targets, lr_features, sr_targets = collate_cached(
                    batch, with_pairs=self.with_pairs, placement=self.placement,
                    target_scale=self.target_scale,
                )  # fmt: skip
                _, losses = self.model.roi_heads(
                    None, features, proposals, targets, lr_features=lr_features,
                    sr_targets=sr_targets,
                )  # fmt: skip
                total = sum(losses.values())
                if not torch.isfinite(total):
                    raise FloatingPointError(
                        f"{label}: loss is {total.item()} at iteration {it} ({losses}); lower "
                        "SOLVER.BASE_LR or MODEL.FEATSR.DISCRIMINATOR_LR"
                    )
                self.optimizer.zero_grad(set_to_none=True)
                if self.optimizer_d is not None:
                    self.optimizer_d.zero_grad(set_to_none=True)
                total.backward()
                self.optimizer.step()
                if self.optimizer_d is not None:
                    self.optimizer_d.step()
                self.scheduler.step()
                for k, v in losses.items():
                    history.setdefault(k, []).append(v.item())
                if (it + 1) % log_every == 0 or it + 1 == max_iter:
                    recent = {k: float(np.mean(v[-log_every:])) for k, v in history.items()}
                    text = "  ".join(f"{k}: {v:.4f}" for k, v in sorted(recent.items()))
                    logger.info("%s iter %d/%d  %s  (%.1f s)", label, it + 1, max_iter, text,
                                time.perf_counter() - start)  # fmt: skip
        return {k: float(np.mean(v[-log_every:])) for k, v in history.items()}


@torch.no_grad()
def predict_cached(model, cache: Sequence[CachedImage], batch_size: int = 8) -> list[Instances]:
    """The heads' detections for each cached image, on its original size (as
    :meth:`GeneralizedRCNN.inference` with ``do_postprocess``); consecutive images of one size go
    through the heads ``batch_size`` at a time (the heads treat images independently)."""
    model.eval()
    out = []
    start = 0
    while start < len(cache):
        batch = [cache[start]]
        shape = next(iter(cache[start].features.values())).shape
        while len(batch) < batch_size and start + len(batch) < len(cache):
            following = cache[start + len(batch)]
            if next(iter(following.features.values())).shape != shape:
                break
            batch.append(following)
        features, proposals, _, _, _ = collate_cached(batch, with_pairs=False)
        instances, _ = model.roi_heads(None, features, proposals)
        out.extend(detector_postprocess(i, c.height, c.width) for i, c in zip(instances, batch))
        start += len(batch)
    return out
