"""Low-resolution detection inputs: the HR image of Detectron2's ``DatasetMapper`` plus the LR image
that the degradation pipeline makes from it (TDSR section 4.1, CAJNN section IV-D).

:class:`LRDetectionDatasetMapper` is a ``DatasetMapper`` (so the detector's own resizing, flips and
crops apply, and its boxes follow them) whose output also carries ``"lr_image"``: an RGB uint8
tensor of shape (3, ceil(H / s), ceil(W / s)) made by
:func:`featsr_d2.core.degradations.make_lr_image` from the augmented
``"image"`` (H, W), s = ``MODEL.SR.SCALE``. ``"image"`` stays the HR image in the detector's
``INPUT.FORMAT``: the reconstruction target of TDSR and the input of the table's HR row. With
``INPUT.SR.PATCH_SIZE`` > 0, training images are cropped at random to that side after the
detector's resizing (boxes cropped and clipped as Detectron2 does): a cheaper training step that
keeps the scale of the objects the detector sees.

Choices the papers leave open:

- sizes: when H or W is not a multiple of s, the HR image is padded at the bottom and right by
  replicating its last row / column before degrading, so no object is cut off; models crop the
  s-times upscaled output back to (H, W) (:func:`featsr_d2.core.degradations.lr_size`);
- randomness: at test time each image's degradation (noise, JPEG quality in a range) is drawn from a
  generator seeded by ``INPUT.SR.SEED`` and the image's id (:func:`lr_seed`), so every method of a
  table sees the same LR images and runs repeat; in training it is drawn from NumPy's global
  generator, which Detectron2 seeds per data-loader worker.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from detectron2.config import configurable
from detectron2.data import DatasetMapper
from detectron2.data import transforms as T

from featsr_d2.core import degradations
from featsr_d2.core.degradations import Degradation, make_lr_image
from featsr_d2.data.sr_degradation import build_sr_degradation
from featsr_d2.utils.image import detector_to_rgb

__all__ = [
    "LRDetectionDatasetMapper",
    "lr_seed",
]


def lr_seed(seed: int, dataset_dict: Mapping[str, Any]) -> list[int]:
    """A generator seed for one image's test-time degradation: ``seed`` and a stable hash of its
    ``image_id`` (or ``file_name``): :func:`featsr_d2.core.degradations.lr_seed`."""
    key = dataset_dict.get("image_id", dataset_dict.get("file_name"))
    if key is None:
        raise KeyError("the dataset dict has neither 'image_id' nor 'file_name'")
    return degradations.lr_seed(seed, key)


class LRDetectionDatasetMapper(DatasetMapper):
    """``DatasetMapper`` whose outputs also hold ``"lr_image"``; see the module docstring."""

    @configurable
    def __init__(
        self,
        is_train: bool = True,
        *,
        scale: int,
        degradation: Degradation,
        seed: int = 0,
        **kwargs,
    ):
        """
        Args:
            is_train: as :class:`DatasetMapper`; also selects the randomness of the degradation.
            scale: the SR scale s.
            degradation: RGB uint8 HR -> LR, downscaling by ``scale``.
            seed: seed of the test-time degradations (with each image's id).
            kwargs: the arguments of :class:`DatasetMapper` (augmentations, ``image_format``, ...).
        """
        super().__init__(is_train, **kwargs)
        if getattr(degradation, "scale", scale) != scale:
            raise ValueError(f"the degradation downscales by {degradation.scale}, not by {scale}")
        self.scale = int(scale)
        self.degradation = degradation
        self.seed = int(seed)

    @classmethod
    def from_config(cls, cfg, is_train: bool = True, detector_cfg=None):
        """``cfg``: the TDSR config (scale, degradations, seed, and ``INPUT.SR.PATCH_SIZE``: when
        positive, training images are randomly cropped to that side after the detector's
        augmentations); ``detector_cfg``: the config whose ``INPUT`` gives the image format,
        resizing, flips and crops (default: ``cfg``)."""
        ret = DatasetMapper.from_config(detector_cfg if detector_cfg is not None else cfg, is_train)
        patch = cfg.INPUT.SR.PATCH_SIZE
        if is_train and patch > 0:  # after the detector's resizing: a patch of the image it sees
            ret["augmentations"] = [*ret["augmentations"], T.RandomCrop("absolute", (patch, patch))]
        ret.update(
            scale=cfg.MODEL.SR.SCALE,
            degradation=build_sr_degradation(cfg),
            seed=cfg.INPUT.SR.SEED,
        )
        return ret

    def __call__(self, dataset_dict: dict) -> dict:
        if self.is_train:  # drawn before the augmentations draw theirs
            rng = np.random.default_rng(np.random.randint(0, 2**31 - 1, size=2))
        else:
            rng = np.random.default_rng(lr_seed(self.seed, dataset_dict))
        out = super().__call__(dataset_dict)
        out["lr_image"] = self.lr_image(out, rng)
        return out

    def lr_image(self, dataset_dict: dict, rng: np.random.Generator | None = None) -> torch.Tensor:
        """The LR input (RGB uint8 (3, ceil(H / s), ceil(W / s))) of a mapped dict's ``"image"``
        (H, W): :func:`~featsr_d2.core.degradations.make_lr_image` with the generator ``rng``, by
        default the test-time one seeded by ``INPUT.SR.SEED`` and the image's id
        (:func:`lr_seed`)."""
        if rng is None:
            rng = np.random.default_rng(lr_seed(self.seed, dataset_dict))
        hr = detector_to_rgb(dataset_dict["image"], self.image_format)
        lr = make_lr_image(hr, self.scale, self.degradation, rng)
        return torch.as_tensor(np.ascontiguousarray(lr.transpose(2, 0, 1)))
