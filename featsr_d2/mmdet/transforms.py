"""Low-resolution inputs in an MMDetection pipeline: the LR image made from the HR image that the
detector's own transforms produce (TDSR section 4.1, CAJNN section IV-D), as the Detectron2
mapper (:class:`featsr_d2.data.lr_mapper.LRDetectionDatasetMapper`) makes it.

- :class:`FeatSRMakeLRImage` (registered in MMDetection's ``TRANSFORMS``), placed after the
  detector's transforms (resizing, crops, photometric changes) and just before the packing: the
  image ``results["img"]`` (H, W) becomes the HR target ``results["gt_hr_img"]``, and
  ``results["img"]`` becomes the LR image (ceil(H / s), ceil(W / s)) made by
  :func:`featsr_d2.core.degradations.make_lr_image` with the pipeline of
  :func:`featsr_d2.core.degradations.build_degradation` (MATLAB bicubic 1/s, optionally blur
  before it and noise and JPEG after it). ``img_shape`` stays the HR size (H, W): the size the
  detector sees the SR image at, and the boxes' frame. Channels stay in the pipeline's order
  (``channel_order``, ``LoadImageFromFile``'s: BGR by default; the degradations run in RGB, as
  JPEG's colour conversion needs); a float image (after ``PhotoMetricDistortion``) is saturated
  and rounded to uint8 first (MATLAB's rounding, :func:`featsr_d2.utils.image.round_to_uint8`).
- :class:`FeatSRPackLRDetInputs`: ``PackDetInputs`` that also packs ``gt_hr_img`` into the data
  sample (``data_sample.gt_hr_img``, (3, H, W) uint8), the reconstruction target of TDSR.

Randomness (noise, a JPEG quality range): with ``seed`` None (training pipelines) it is drawn from
NumPy's global generator, which mmengine seeds per data-loader worker; with an integer ``seed``
(test pipelines) each image's degradation is drawn from a generator seeded by it and the image's id
(:func:`featsr_d2.core.degradations.lr_seed`, as the Detectron2 mapper seeds it), so every method
of a table sees the same LR images and runs repeat.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mmcv.transforms import BaseTransform, to_tensor
from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS

from featsr_d2.core.degradations import build_degradation, lr_seed, make_lr_image
from featsr_d2.utils.image import round_to_uint8

__all__ = ["FeatSRMakeLRImage", "FeatSRPackLRDetInputs"]


@TRANSFORMS.register_module()
class FeatSRMakeLRImage(BaseTransform):
    """The HR image becomes ``gt_hr_img``, the LR image made from it ``img``; see the module
    docstring.

    Args:
        scale: the SR scale s.
        degradations: the steps, in order, among "blur", "bicubic", "noise", "jpeg" ("bicubic"
            exactly once).
        blur_sigma, noise_sigma, jpeg_quality: each step's fixed value or (low, high) range.
        seed: None draws from NumPy's global generator (training); an integer seeds each image's
            degradation with it and the image's id (test).
        channel_order: the pipeline's channel order, "bgr" or "rgb" (``LoadImageFromFile``'s).
    """

    def __init__(
        self,
        scale: int = 4,
        degradations: Sequence[str] = ("bicubic",),
        blur_sigma: float | Sequence[float] = 1.0,
        noise_sigma: float | Sequence[float] = 10.0,
        jpeg_quality: int | Sequence[int] = (10, 100),
        seed: int | None = None,
        channel_order: str = "bgr",
    ) -> None:
        if channel_order not in ("bgr", "rgb"):
            raise ValueError(f"channel_order must be 'bgr' or 'rgb', got {channel_order!r}")
        self.scale = int(scale)
        self.degradation = build_degradation(
            list(degradations),
            scale=self.scale,
            blur_sigma=blur_sigma,
            noise_sigma=noise_sigma,
            jpeg_quality=jpeg_quality,
            setting="FeatSRMakeLRImage's degradations",
        )
        self.seed = seed
        self.channel_order = channel_order

    def _rng(self, results: dict) -> np.random.Generator:
        if self.seed is None:  # as the Detectron2 mapper: two draws of the global generator
            return np.random.default_rng(np.random.randint(0, 2**31 - 1, size=2))
        return np.random.default_rng(
            lr_seed(self.seed, results.get("img_id", results.get("img_path")))
        )

    def transform(self, results: dict) -> dict:
        image = results["img"]
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(
                f"FeatSRMakeLRImage takes colour images (H, W, 3), got {image.shape} for "
                f"{results.get('img_path')}"
            )
        hr = image if image.dtype == np.uint8 else round_to_uint8(image)
        swap = self.channel_order == "bgr"
        rgb = np.ascontiguousarray(hr[..., ::-1]) if swap else hr
        lr = make_lr_image(rgb, self.scale, self.degradation, self._rng(results))
        results["gt_hr_img"] = hr
        results["img"] = np.ascontiguousarray(lr[..., ::-1]) if swap else lr
        return results

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(scale={self.scale}, degradation={self.degradation!r}, "
            f"seed={self.seed}, channel_order={self.channel_order!r})"
        )


@TRANSFORMS.register_module()
class FeatSRPackLRDetInputs(PackDetInputs):
    """``PackDetInputs`` (``inputs``: the LR image) that also packs ``gt_hr_img`` into the data
    sample as a (3, H, W) uint8 tensor, when the pipeline made one."""

    def transform(self, results: dict) -> dict:
        hr = results.pop("gt_hr_img", None)
        packed = super().transform(results)
        if hr is not None:
            packed["data_samples"].gt_hr_img = to_tensor(
                np.ascontiguousarray(hr.transpose(2, 0, 1))
            )
        return packed
