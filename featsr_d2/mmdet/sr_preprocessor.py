"""An SR network (CAJNN, D-DBPN, ...) in front of any MMDetection detector, at inference: a data
pre-processor that super-resolves the LR input before the detector's own pre-processing.

:class:`FeatSRSuperResolvePreprocessor` (registered in MMDetection's ``MODELS``) replaces a
detector's ``data_preprocessor`` and wraps it: ``data_preprocessor=dict(type=
"FeatSRSuperResolvePreprocessor", sr=dict(type="CAJNN", scale=4), sr_checkpoint=...,
detector_preprocessor=<the detector's own data_preprocessor>)``. On each batch it

1. runs the SR network (frozen, eval mode, no gradient) on the LR images (3, h, w) of the
   pipeline (0..255, BGR with ``bgr_to_rgb`` as ``LoadImageFromFile`` loads them), clamps the
   output to [0, 1] and turns it back into the pipeline's order and range;
2. scales each data sample's ``img_shape`` and ``scale_factor`` by s, so that the detector clips
   its boxes to the SR image and ``rescale`` maps them back to the original LR image: predictions
   come out in the coordinates of the image as loaded, and any metric works on them;
3. hands the SR images to the detector's own pre-processor (mean, std, channel conversion,
   padding, batch augmentations).

The SR weights are loaded when the pre-processor is built (``sr_checkpoint``: an SR, TDSR or
CAJNN checkpoint of either framework, strictly), because mmengine's test runs never call
``init_weights``; a detector checkpoint loaded afterwards (``load_from``) does not hold them and
leaves them as they are (mmengine reports them as missing keys). It refuses to pre-process a
training batch: the boxes of a training sample would need scaling too, and training the SR
network through a detector is :class:`featsr_d2.mmdet.tdsr.FeatSRTaskDrivenSR`.
"""

from __future__ import annotations

import torch
from mmdet.registry import MODELS
from mmengine.model import BaseDataPreprocessor

from featsr_d2.core.sr.super_resolve import super_resolve
from featsr_d2.mmdet.checkpoints import load_sr_weights
from featsr_d2.mmdet.sr_networks import lr_to_rgb, rgb_to_loader_order

__all__ = ["FeatSRSuperResolvePreprocessor"]


@MODELS.register_module()
class FeatSRSuperResolvePreprocessor(BaseDataPreprocessor):
    """Super-resolves LR inputs, then runs the detector's data pre-processor; see the module
    docstring.

    Args:
        sr: the SR network's config (``dict(type="CAJNN", scale=4)``, ``"DBPN"``, ...).
        detector_preprocessor: the detector's own data pre-processor config.
        sr_checkpoint: the SR network's weights (None keeps its initialization: for tests).
        bgr_to_rgb: the pipeline's images are BGR (``LoadImageFromFile``'s default order).
        non_blocking: as :class:`mmengine.model.BaseDataPreprocessor`.
    """

    def __init__(
        self,
        sr: dict,
        detector_preprocessor: dict,
        sr_checkpoint: str | None = None,
        bgr_to_rgb: bool = True,
        non_blocking: bool = False,
    ) -> None:
        super().__init__(non_blocking=non_blocking)
        self.sr = MODELS.build(sr)
        if not isinstance(getattr(self.sr, "scale", None), int):
            raise TypeError(f"the SR network {type(self.sr).__name__} has no integer 'scale'")
        self.detector_preprocessor = MODELS.build(detector_preprocessor)
        self.bgr_to_rgb = bool(bgr_to_rgb)
        if sr_checkpoint:
            load_sr_weights(self.sr, sr_checkpoint)
        for p in self.sr.parameters():
            p.requires_grad_(False)
        self.sr.eval()

    @property
    def scale(self) -> int:
        return self.sr.scale

    def train(self, mode: bool = True) -> FeatSRSuperResolvePreprocessor:
        """As :meth:`torch.nn.Module.train`; the SR network stays in eval mode."""
        super().train(mode)
        self.sr.eval()
        return self

    def forward(self, data: dict, training: bool = False) -> dict:
        if training:
            raise RuntimeError(
                "FeatSRSuperResolvePreprocessor super-resolves inputs at inference only (the boxes "
                "of a training sample are not scaled); to train an SR network through a detector, "
                "use FeatSRTaskDrivenSR"
            )
        data = self.cast_data(data)
        inputs, samples = data["inputs"], data.get("data_samples")
        images = list(inputs.unbind(0)) if isinstance(inputs, torch.Tensor) else list(inputs)
        with torch.no_grad():
            sr = super_resolve(self.sr, lr_to_rgb(images, self.bgr_to_rgb))
        sr_images = [rgb_to_loader_order(x.clamp(0.0, 1.0), self.bgr_to_rgb) for x in sr]
        s = self.scale
        for sample, image in zip(samples or [], sr_images):
            factor = sample.metainfo.get("scale_factor", (1.0, 1.0))
            sample.set_metainfo(
                {
                    "img_shape": tuple(image.shape[-2:]),
                    "scale_factor": (factor[0] * s, factor[1] * s),
                }
            )
        # The detector's pre-processor moves the batch to its own device: make it this one's (which
        # BaseModel.to sets on every pre-processor, but this wrapper's own .to does not pass on).
        self.detector_preprocessor._device = self._device
        return self.detector_preprocessor({"inputs": sr_images, "data_samples": samples}, False)
