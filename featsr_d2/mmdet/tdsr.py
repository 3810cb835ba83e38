"""TDSR in MMDetection: an image SR network S trained through a frozen detector D (Haris,
Shakhnarovich and Ukita, "Task-Driven Super Resolution: Object Detection in Low-Resolution
Images", ICONIP 2021, section 3), the counterpart of the Detectron2 meta-architecture
:class:`featsr_d2.modeling.meta_arch.task_driven_sr.TaskDrivenSR`.

:class:`FeatSRTaskDrivenSR` (registered in MMDetection's ``MODELS``) chains S, any SR network of
the registry (``DBPN`` as the paper, ``CAJNN``, ``RRDBNet``, ``FeatSRBicubic``:
:mod:`featsr_d2.mmdet.sr_networks`), and D, any MMDetection detector given by its model config
(SSD300 as the paper, Faster R-CNN, RetinaNet, ...). Training minimizes eq. 3 over S's parameters:

    L = alpha * L_rec(x_h, S(x_l)) + beta * L_task(y, D(S(x_l)))

``loss_rec`` is alpha * L_rec (``reconstruction_loss``: "MSE" as eq. 1, "L1" or "Charbonnier";
averaged over the pixels of each image, then over the images); L_task is the sum of D's own
training losses (``D.loss``), each entry whose name holds "loss" multiplied by beta and returned
under D's name (entries such as the box head's ``acc`` pass unchanged; mmengine sums only the
"loss" entries). D is frozen: every parameter has ``requires_grad`` False and D stays in eval mode
whatever the mode of the model (MMDetection detectors compute their losses in either mode; eval
fixes their normalization statistics and disables dropout), so the gradient of L_task reaches S's
parameters through D's input only (eq. 4). With beta = 0 (SR-FT, SR-FT+) D is not run in training.

Inputs (the pipeline's ``FeatSRMakeLRImage`` and ``FeatSRPackLRDetInputs``,
:mod:`featsr_d2.mmdet.transforms`): ``inputs`` are the LR images (3, h, w), 0..255, in the
pipeline's channel order (``bgr_to_rgb``: BGR, as ``LoadImageFromFile`` loads them); each data
sample carries ``img_shape`` (H, W), the HR size its boxes refer to, and, in training,
``gt_hr_img``, the HR image. The model's data pre-processor only moves them to the device
(mmengine's ``BaseDataPreprocessor``). S's output (RGB [0, 1], cropped to (H, W)) is turned back
into the pipeline's order and range and handed to D's own data pre-processor (its mean, std,
channel conversion and padding are differentiable), so D sees an SR image as it sees a loaded one.
In training the SR output goes to D unclamped (clamping would zero the gradient of saturated
pixels); at inference it is clamped to [0, 1], the image one would save, and ``predict`` returns
D's predictions, rescaled to the original image as D's own are, so any MMDetection metric works.

Weights: building loads none. ``init_weights`` (which mmengine's runner calls before training,
before it resumes) loads D's trained weights from ``detector_checkpoint`` and S's initial ones from
``sr_checkpoint`` (strictly: :mod:`featsr_d2.mmdet.checkpoints`); it does not run D's own
initialization (a backbone's ImageNet ``init_cfg`` would be overwritten anyway). A checkpoint of
this model holds both S and D, so testing it (``load_from``) needs neither.

Where the paper is silent the choices are those of the Detectron2 side, written in its module's
docstring; the one difference: D stays in eval mode here (Detectron2 detectors compute losses only
in training mode, with their normalization and dropout layers kept in eval).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from mmdet.models.detectors import BaseDetector
from mmdet.registry import MODELS
from mmengine.logging import MMLogger
from mmengine.model import ImgDataPreprocessor
from torch import Tensor

from featsr_d2.core.sr.losses import reconstruction_loss as build_reconstruction_loss
from featsr_d2.core.sr.super_resolve import super_resolve
from featsr_d2.mmdet.checkpoints import load_detector_weights, load_sr_weights
from featsr_d2.mmdet.sr_networks import lr_to_rgb, rgb_to_loader_order

__all__ = ["FeatSRTaskDrivenSR"]


@MODELS.register_module()
class FeatSRTaskDrivenSR(BaseDetector):
    """SR network + frozen MMDetection detector, trained by eq. 3 of TDSR; see the module
    docstring.

    Args:
        sr: S's config (``dict(type="DBPN", scale=4, ...)``).
        detector: D's model config (a detector's ``model`` dict, with its own
            ``data_preprocessor``, ``train_cfg`` and ``test_cfg``).
        alpha: weight of L_rec.
        beta: weight of L_task; 0 skips D in training.
        reconstruction_loss: "MSE", "L1" or "Charbonnier".
        charbonnier_eps: the Charbonnier loss's epsilon.
        sr_checkpoint: S's initial weights (an SR or TDSR checkpoint of either framework), or None
            to start from S's initialization.
        detector_checkpoint: D's trained weights (an MMDetection checkpoint of D, or a TDSR one).
        bgr_to_rgb: the pipeline's images are BGR (``LoadImageFromFile``'s default order).
        data_preprocessor: this model's (default: mmengine's ``BaseDataPreprocessor``, which only
            moves the batch to the device).
        init_cfg: unused by ``init_weights`` (see the module docstring); kept for mmengine.
    """

    def __init__(
        self,
        sr: dict,
        detector: dict,
        alpha: float = 1.0,
        beta: float = 0.01,
        reconstruction_loss: str = "MSE",
        charbonnier_eps: float = 1e-3,
        sr_checkpoint: str | None = None,
        detector_checkpoint: str | None = None,
        bgr_to_rgb: bool = True,
        data_preprocessor: dict | None = None,
        init_cfg: dict | None = None,
    ) -> None:
        super().__init__(data_preprocessor=data_preprocessor, init_cfg=init_cfg)
        if isinstance(self.data_preprocessor, ImgDataPreprocessor):
            raise TypeError(
                f"FeatSRTaskDrivenSR's own data_preprocessor must not normalize or stack the LR "
                f"images (got {type(self.data_preprocessor).__name__}): leave it unset (mmengine's "
                "BaseDataPreprocessor); the detector's config holds the detector's"
            )
        if alpha < 0 or beta < 0 or alpha + beta == 0:
            raise ValueError(f"need alpha, beta >= 0, not both 0; got alpha={alpha}, beta={beta}")
        self.sr = MODELS.build(sr)
        if not isinstance(getattr(self.sr, "scale", None), int):
            raise TypeError(f"the SR network {type(self.sr).__name__} has no integer 'scale'")
        self.detector = MODELS.build(detector)
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.rec_loss = build_reconstruction_loss(
            reconstruction_loss, charbonnier_eps, setting="FeatSRTaskDrivenSR's reconstruction_loss"
        )
        self.sr_checkpoint = sr_checkpoint
        self.detector_checkpoint = detector_checkpoint
        self.bgr_to_rgb = bool(bgr_to_rgb)
        for p in self.detector.parameters():
            p.requires_grad_(False)
        self.detector.eval()

    def train(self, mode: bool = True) -> FeatSRTaskDrivenSR:
        """As :meth:`torch.nn.Module.train`; the detector stays in eval mode."""
        super().train(mode)
        self.detector.eval()
        return self

    def init_weights(self) -> None:
        """Loads D's and S's weights from the checkpoints the config names (see the module
        docstring)."""
        logger = MMLogger.get_current_instance()
        if self.detector_checkpoint:
            load_detector_weights(self.detector, self.detector_checkpoint)
        else:
            logger.warning(
                "FeatSRTaskDrivenSR: no detector_checkpoint: the frozen detector keeps its "
                "initialization (set detector_checkpoint to a trained detector's checkpoint)"
            )
        if self.sr_checkpoint:
            load_sr_weights(self.sr, self.sr_checkpoint)

    # ----------------------------------------------------------------------------------------
    # The SR stage and the detector's input
    # ----------------------------------------------------------------------------------------
    def super_resolve(
        self, lr_images: Sequence[Tensor], sizes: Sequence[tuple[int, int]] | None = None
    ) -> list[Tensor]:
        """S on LR images of the pipeline (3, h, w): one RGB float SR image per input, unclamped,
        cropped to ``sizes`` (H, W) when given."""
        return super_resolve(self.sr, lr_to_rgb(lr_images, self.bgr_to_rgb), sizes)

    def _sr_images(self, batch_inputs, batch_data_samples) -> list[Tensor]:
        images = list(batch_inputs)
        sizes = [tuple(s.img_shape) for s in batch_data_samples]
        return self.super_resolve(images, sizes)

    def _detector_batch(self, sr: Sequence[Tensor], batch_data_samples, training: bool) -> dict:
        """D's data pre-processor on the SR images, as on loaded images."""
        images = [rgb_to_loader_order(x, self.bgr_to_rgb) for x in sr]
        return self.detector.data_preprocessor(
            {"inputs": images, "data_samples": batch_data_samples}, training
        )

    # ----------------------------------------------------------------------------------------
    # BaseDetector's modes
    # ----------------------------------------------------------------------------------------
    def loss(self, batch_inputs, batch_data_samples) -> dict:
        """``loss_rec`` (alpha * L_rec) and beta times each of D's losses, under D's names."""
        missing = [k for k, s in enumerate(batch_data_samples) if "gt_hr_img" not in s]
        if missing:
            raise KeyError(
                "FeatSRTaskDrivenSR trains on data samples with 'gt_hr_img' (the HR image): end "
                "the training pipeline with FeatSRMakeLRImage and FeatSRPackLRDetInputs "
                f"(samples {missing[:5]} have none)"
            )
        sr = self._sr_images(batch_inputs, batch_data_samples)
        hr = lr_to_rgb([s.gt_hr_img for s in batch_data_samples], self.bgr_to_rgb)
        for k, (a, b) in enumerate(zip(sr, hr)):
            if a.shape != b.shape:
                raise ValueError(
                    f"sample {k}: the HR image is {tuple(b.shape[-2:])} but img_shape is "
                    f"{tuple(a.shape[-2:])}: FeatSRMakeLRImage must come after every transform "
                    "that changes the image"
                )
        if len({tuple(x.shape) for x in sr}) == 1:
            rec = self.rec_loss(torch.stack(sr), torch.stack(hr))
        else:
            rec = torch.stack([self.rec_loss(a, b) for a, b in zip(sr, hr)]).mean()
        losses = {"loss_rec": self.alpha * rec}
        if self.beta > 0:
            batch = self._detector_batch(sr, batch_data_samples, training=True)
            for name, value in self.detector.loss(batch["inputs"], batch["data_samples"]).items():
                if "loss" not in name:
                    losses[name] = value
                elif isinstance(value, (list, tuple)):
                    losses[name] = [self.beta * v for v in value]
                else:
                    losses[name] = self.beta * value
        return losses

    def predict(self, batch_inputs, batch_data_samples, rescale: bool = True):
        """D's predictions on the clamped SR images (in the original image's coordinates with
        ``rescale``)."""
        sr = [x.clamp(0.0, 1.0) for x in self._sr_images(batch_inputs, batch_data_samples)]
        batch = self._detector_batch(sr, batch_data_samples, training=False)
        return self.detector.predict(batch["inputs"], batch["data_samples"], rescale=rescale)

    def _forward(self, batch_inputs, batch_data_samples=None):
        """D's raw outputs on the SR images (cropped to the samples' ``img_shape`` when given)."""
        if batch_data_samples is None:
            sr = self.super_resolve(list(batch_inputs))
        else:
            sr = self._sr_images(batch_inputs, batch_data_samples)
        batch = self._detector_batch(sr, batch_data_samples, training=False)
        return self.detector._forward(batch["inputs"], batch["data_samples"])

    def extract_feat(self, batch_inputs):
        """D's features of the (uncropped) SR images."""
        batch = self._detector_batch(self.super_resolve(list(batch_inputs)), None, training=False)
        return self.detector.extract_feat(batch["inputs"])
