"""TDSR: an image SR network S trained through a frozen detector D (Haris, Shakhnarovich and Ukita,
"Task-Driven Super Resolution: Object Detection in Low-Resolution Images", ICONIP 2021, section 3).

:class:`TaskDrivenSR` (registered as ``TaskDrivenSR``) chains S, any network of
``SR_NETWORK_REGISTRY`` (``DBPN`` as the paper, ``CAJNN``, ``Bicubic``, ...), and D, a Detectron2
detector built from its own config (``MODEL.TDSR.DETECTOR_CONFIG``, read into the run's config when
that was made: :func:`featsr_d2.config.get_detector_cfg`). Building reads no file and loads no
weights:
:class:`featsr_d2.checkpoint.tdsr_checkpointer.TDSRCheckpointer` loads D's trained weights
(``MODEL.TDSR.DETECTOR_WEIGHTS``) and S's initial ones (``MODEL.SR.WEIGHTS``) unless the run's
checkpoint holds them. Training minimizes eq. 3 over S's parameters only:

    L = alpha * L_rec(x_h, S(x_l)) + beta * L_task(y, D(S(x_l)))

with L_rec = ``MODEL.SR.LOSS`` (MSE, eq. 1, in the TDSR configs) and L_task = the sum of D's own
training losses (Faster R-CNN: RPN objectness and box regression, box classifier and box
regression; RetinaNet: focal loss and box regression), each multiplied by beta and returned under
D's names. D is frozen: every parameter has ``requires_grad`` False (so eq. 4 holds: the gradient of
L_task reaches S's parameters through D's input only), and D's normalization and dropout layers stay
in eval mode when the meta-architecture is put in training mode (D itself is in training mode then,
because Detectron2 detectors compute their losses only in training mode: that only switches their
loss branches, anchor / proposal sampling and the training proposal counts).

Inputs, per image (Detectron2's dataset-dict convention):

- ``"image"``: the HR image x_h in D's ``INPUT.FORMAT`` (uint8 or float, 0..255), after D's
  augmentations (:class:`featsr_d2.data.lr_mapper.LRDetectionDatasetMapper`);
- ``"lr_image"``: the LR image x_l, RGB uint8 (3, ceil(H / s), ceil(W / s)) (or float in [0, 1]),
  made by the mapper (:class:`~featsr_d2.data.lr_mapper.LRDetectionDatasetMapper` degrades
  ``"image"`` with ``INPUT.SR``; the TDSR trainer's train and test loaders use it), or a real LR
  image supplied by the caller; the model itself makes no input;
- ``"instances"`` (training), ``"height"`` / ``"width"`` (the output size of the detections).

The SR network works in RGB [0, 1] (its convention); its output, cropped to (H, W), is converted
to D's format (x 255, RGB -> BGR when D takes BGR: :mod:`featsr_d2.utils.image`) and handed to D
as ``"image"``, which normalizes it with its own ``PIXEL_MEAN`` / ``PIXEL_STD``. Choices the
paper leaves open:

- in training the SR output goes to D unclamped (clamping would zero the gradient of saturated
  pixels); at inference it is clamped to [0, 1], the image one would save;
- L_rec is averaged over the pixels of each image, then over the images of the batch;
- with beta = 0 (SR-FT) D is not run in training: the loss is exactly alpha * L_rec;
- the paper's SSD300 is not part of Detectron2; the configs use Faster R-CNN (R50-C4 for the VOC
  setting, MobileNetV2-FPN for the synthetic TT100K) and RetinaNet works the same way. Faster
  R-CNN's L_task is two-stage, so its gradient reaches S through the RPN and through the RoI
  features of the sampled proposals, where SSD's reaches it through every matched default box.

At inference the model returns D's results (``"instances"`` in ``"height"`` x ``"width"``
coordinates), so any Detectron2 evaluator works, plus ``"sr_image"`` (RGB float (3, H, W) in
[0, 1]) with ``MODEL.TDSR.RETURN_SR_IMAGE``. :meth:`TaskDrivenSR.super_resolve` is the SR stage
alone, and ``model.sr`` is a plain SR network (RGB [0, 1] in and out) that another project can use
as a pre-processor.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import torch
from detectron2.config import configurable
from detectron2.modeling import META_ARCH_REGISTRY, build_model
from torch import nn
from torch.nn.modules.batchnorm import _NormBase
from torch.nn.modules.dropout import _DropoutNd

from featsr_d2.config import get_detector_cfg
from featsr_d2.core.sr.network import SRNetwork
from featsr_d2.core.sr.super_resolve import super_resolve
from featsr_d2.modeling.sr.losses import build_sr_loss
from featsr_d2.modeling.sr.registry import build_sr_network
from featsr_d2.utils.image import (
    DETECTOR_FORMATS,
    detector_to_rgb_tensor,
    input_name,
    require_nonempty_images,
    rgb_tensor_to_detector,
)

__all__ = ["TaskDrivenSR", "freeze_detector"]

logger = logging.getLogger(__name__)


def freeze_detector(detector: nn.Module) -> None:
    """No parameter of ``detector`` is trainable, and its normalization (BatchNorm, SyncBatchNorm,
    InstanceNorm with statistics) and dropout layers are in eval mode whatever the mode of the
    rest (FrozenBatchNorm2d, GroupNorm and LayerNorm behave the same in both modes)."""
    for p in detector.parameters():
        p.requires_grad_(False)
    for m in detector.modules():
        if isinstance(m, (_NormBase, _DropoutNd)):
            m.eval()


@META_ARCH_REGISTRY.register()
class TaskDrivenSR(nn.Module):
    """SR network + frozen detector, trained by eq. 3 of TDSR; see the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        sr_network: SRNetwork,
        detector: nn.Module,
        alpha: float = 1.0,
        beta: float = 0.01,
        reconstruction_loss=None,
        return_sr_image: bool = False,
    ):
        """
        Args:
            sr_network: S, RGB [0, 1] (N, 3, h, w) -> (N, 3, s*h, s*w).
            detector: D, a Detectron2 detector with ``input_format`` "RGB" or "BGR" (e.g.
                :class:`GeneralizedRCNN`, :class:`RetinaNet`); frozen here.
            alpha: weight of L_rec.
            beta: weight of L_task; 0 skips D in training.
            reconstruction_loss: L_rec as ``loss(sr, hr) -> scalar`` (default: MSE).
            return_sr_image: at inference, add ``"sr_image"`` to each result.
        """
        super().__init__()
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ValueError(f"need alpha, beta >= 0, not both 0; got alpha={alpha}, beta={beta}")
        self.input_format = getattr(detector, "input_format", None)
        if self.input_format not in DETECTOR_FORMATS:
            raise ValueError(
                f"the detector's INPUT.FORMAT must be RGB or BGR, got {self.input_format!r}"
            )
        self.sr = sr_network
        self.detector = detector
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.reconstruction_loss = reconstruction_loss or nn.functional.mse_loss
        self.return_sr_image = bool(return_sr_image)
        freeze_detector(self.detector)

    @classmethod
    def from_config(cls, cfg):
        # As initialized: the frozen detector's weights (MODEL.TDSR.DETECTOR_WEIGHTS) and the SR
        # network's (MODEL.SR.WEIGHTS / WARM_START) are the checkpointer's to load
        # (featsr_d2.checkpoint.tdsr_checkpointer.TDSRCheckpointer); the detector's config is the
        # one the run's config holds (MODEL.TDSR.RESOLVED_DETECTOR).
        return {
            "sr_network": build_sr_network(cfg),
            "detector": build_model(get_detector_cfg(cfg)),
            "alpha": cfg.MODEL.TDSR.ALPHA,
            "beta": cfg.MODEL.TDSR.BETA,
            "reconstruction_loss": build_sr_loss(cfg),
            "return_sr_image": cfg.MODEL.TDSR.RETURN_SR_IMAGE,
        }

    @property
    def device(self) -> torch.device:
        return next(self.detector.parameters()).device

    @property
    def scale(self) -> int:
        return self.sr.scale

    def train(self, mode: bool = True):
        """As :meth:`nn.Module.train`; the detector's normalization and dropout stay in eval."""
        super().train(mode)
        freeze_detector(self.detector)
        return self

    def lr_image(self, dataset_dict: dict) -> torch.Tensor:
        """The input's ``"lr_image"`` (RGB (3, h, w)), which its mapper made."""
        if "lr_image" not in dataset_dict:
            raise KeyError(
                "a TaskDrivenSR input needs 'lr_image' (the LR image, RGB (3, h, w)): map the "
                "dataset with featsr_d2.data.lr_mapper.LRDetectionDatasetMapper (the TDSR "
                "trainer's loaders do), or supply the LR image"
            )
        return dataset_dict["lr_image"]

    # ----------------------------------------------------------------------------------------
    # The SR stage
    # ----------------------------------------------------------------------------------------
    def super_resolve(
        self, lr_images: Sequence[torch.Tensor], sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[torch.Tensor]:
        """S on LR images (RGB, uint8 0..255 or float [0, 1], (3, h, w) each): one SR image
        (RGB float, (3, s*h, s*w), unclamped) per input, cropped to ``sizes`` (HR (H, W)) when
        given. Images of one size run as one batch. An empty image is refused
        (:class:`~featsr_d2.utils.image.EmptyImageError`)."""
        require_nonempty_images([(f"LR image {k}", im) for k, im in enumerate(lr_images)])
        xs = []
        for im in lr_images:
            x = im.to(self.device, non_blocking=True)
            xs.append(x if x.is_floating_point() else detector_to_rgb_tensor(x, "RGB"))
        return super_resolve(self.sr, xs, sizes)

    # ----------------------------------------------------------------------------------------
    # Training and inference
    # ----------------------------------------------------------------------------------------
    def forward(self, batched_inputs: list[dict]):
        """Training: the loss dict of eq. 3 (``loss_rec`` = alpha * L_rec, and beta times each of
        the detector's losses under its own name). Inference: the detector's results on the SR
        images (plus ``"sr_image"`` when asked)."""
        require_nonempty_images(
            [
                (f"{what} of {input_name(x, k)}", x[key])
                for k, x in enumerate(batched_inputs)
                for key, what in (("image", "the HR image"), ("lr_image", "the LR image"))
                if key in x
            ]
        )
        sizes = [tuple(x["image"].shape[-2:]) for x in batched_inputs]
        sr = self.super_resolve([self.lr_image(x) for x in batched_inputs], sizes)
        if not self.training:
            return self._inference(batched_inputs, sr)
        hr = [
            detector_to_rgb_tensor(x["image"].to(self.device, non_blocking=True), self.input_format)
            for x in batched_inputs
        ]
        if len(set(sizes)) == 1:
            rec = self.reconstruction_loss(torch.stack(sr), torch.stack(hr))
        else:
            rec = torch.stack([self.reconstruction_loss(a, b) for a, b in zip(sr, hr)]).mean()
        losses = {"loss_rec": self.alpha * rec}
        if self.beta > 0:
            task = self.detector(self._detector_inputs(batched_inputs, sr))
            losses.update({k: self.beta * v for k, v in task.items()})
        return losses

    def _detector_inputs(self, batched_inputs: list[dict], sr: list[torch.Tensor]) -> list[dict]:
        out = []
        for x, image in zip(batched_inputs, sr):
            d = {k: v for k, v in x.items() if k != "lr_image"}
            d["image"] = rgb_tensor_to_detector(image, self.input_format)
            out.append(d)
        return out

    def _inference(self, batched_inputs: list[dict], sr: list[torch.Tensor]) -> list[dict]:
        sr = [x.clamp(0.0, 1.0) for x in sr]
        results = self.detector(self._detector_inputs(batched_inputs, sr))
        if self.return_sr_image:
            for r, image in zip(results, sr):
                r["sr_image"] = image
        return results
