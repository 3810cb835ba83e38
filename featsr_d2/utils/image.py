"""Image conventions, in one place, and the conversions between them.

Three representations of a colour image meet in this package:

- **detector format**: what a Detectron2 model reads in ``dataset_dict["image"]``, a (3, H, W)
  tensor in 0..255 (uint8 from the mapper), channels in ``cfg.INPUT.FORMAT`` order ("RGB" or
  "BGR"; the other formats of Detectron2 are not supported here);
- **RGB float tensor**: what the SR networks read and write, (3, H, W) or (N, 3, H, W) float in
  [0, 1], RGB;
- **RGB uint8 array**: what the degradations, the metrics (PSNR, SSIM) and the pictures use,
  (H, W, 3) uint8 numpy, RGB. OpenCV reads and writes BGR: :func:`swap_rgb_bgr` converts.

Rounding to 8 bits is MATLAB's (saturate, then round half away from zero), the convention of
the SR literature's metrics.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = [
    "DETECTOR_FORMATS",
    "EmptyImageError",
    "detector_to_rgb",
    "detector_to_rgb_tensor",
    "from_detector_format",
    "input_name",
    "require_nonempty_images",
    "rgb_tensor_to_detector",
    "rgb_to_tensor",
    "round_to_uint8",
    "swap_rgb_bgr",
    "tensor_to_rgb",
    "to_detector_format",
]

# The detector input formats (cfg.INPUT.FORMAT) whose channels are RGB or its reverse.
DETECTOR_FORMATS = ("RGB", "BGR")


class EmptyImageError(ValueError):
    """A model input image without a pixel (0 rows or 0 columns)."""


def input_name(dataset_dict: dict, index: int) -> str:
    """How an error names a model input: its file, else its image id, else its place."""
    if dataset_dict.get("file_name"):
        return f"image {dataset_dict['file_name']}"
    if "image_id" in dataset_dict:
        return f"image id {dataset_dict['image_id']!r}"
    return f"input {index} of the batch"


def require_nonempty_images(images: Sequence[tuple[str, torch.Tensor]]) -> None:
    """Raise :class:`EmptyImageError` for the first (name, (C, H, W) tensor) with H or W 0: at
    the model's boundary, instead of deep inside a convolution ("Kernel size can't be greater
    than actual input size")."""
    for name, image in images:
        if image.dim() < 2 or image.shape[-1] == 0 or image.shape[-2] == 0:
            raise EmptyImageError(
                f"{name} is empty ({'x'.join(str(s) for s in image.shape[-2:])} pixels, height x "
                "width): a model needs at least one pixel. Remove the image from the dataset (or "
                "the batch)."
            )


def _check_format(input_format: str) -> None:
    if input_format not in DETECTOR_FORMATS:
        raise ValueError(f"INPUT.FORMAT must be RGB or BGR, not {input_format!r}")


def round_to_uint8(image: np.ndarray) -> np.ndarray:
    """Saturate to [0, 255] and round half away from zero (all values are then non-negative), as
    MATLAB's conversion to uint8 does."""
    return np.floor(np.clip(image, 0, 255) + 0.5).astype(np.uint8)


def swap_rgb_bgr(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) RGB array as BGR, or BGR as RGB (OpenCV's order), contiguous."""
    return np.ascontiguousarray(image[..., ::-1])


def to_detector_format(rgb: torch.Tensor, input_format: str) -> torch.Tensor:
    """A (3, H, W) RGB tensor with its channels in ``input_format``'s order (values unchanged)."""
    _check_format(input_format)
    return rgb.flip(0) if input_format == "BGR" else rgb


def from_detector_format(image: torch.Tensor, input_format: str) -> torch.Tensor:
    """A (3, H, W) tensor in ``input_format``'s channel order as RGB (values unchanged)."""
    _check_format(input_format)
    return image.flip(0) if input_format == "BGR" else image


def detector_to_rgb(image: torch.Tensor | np.ndarray, input_format: str) -> np.ndarray:
    """A (3, H, W) image in the detector's ``input_format`` (0..255) as an RGB uint8 (H, W, 3)
    array (:func:`round_to_uint8` when it is not uint8)."""
    _check_format(input_format)
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim != 3 or array.shape[0] != 3:
        raise ValueError(f"expected a (3, H, W) image, got {array.shape}")
    array = array.transpose(1, 2, 0)
    if input_format == "BGR":
        array = array[..., ::-1]
    if array.dtype != np.uint8:
        array = round_to_uint8(array)
    return np.ascontiguousarray(array)


def detector_to_rgb_tensor(image: torch.Tensor, input_format: str) -> torch.Tensor:
    """A (3, H, W) image in the detector's ``input_format`` (0..255) as an RGB float tensor in
    [0, 1], on the image's device."""
    return from_detector_format(image.float().div(255.0), input_format)


def rgb_tensor_to_detector(rgb: torch.Tensor, input_format: str) -> torch.Tensor:
    """A (3, H, W) RGB float tensor in [0, 1] as a float image in the detector's ``input_format``
    (0..255; not clamped or rounded, so gradients flow)."""
    return to_detector_format(rgb * 255.0, input_format)


def rgb_to_tensor(images: np.ndarray | Sequence[np.ndarray]) -> torch.Tensor:
    """RGB uint8 (H, W, 3) image(s) of one size -> float (N, 3, H, W) in [0, 1]."""
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    batch = np.stack(list(images))
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)


def tensor_to_rgb(x: torch.Tensor) -> np.ndarray:
    """A (3, H, W) float tensor in [0, 1] -> RGB uint8 (H, W, 3), clamped and rounded."""
    if x.dim() != 3:
        raise ValueError(f"expected (3, H, W), got {tuple(x.shape)}")
    array = x.detach().float().clamp(0, 1).mul(255.0).add(0.5).floor().byte().permute(1, 2, 0)
    return np.ascontiguousarray(array.cpu().numpy())
