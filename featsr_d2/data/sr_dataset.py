"""High-resolution image folders for SR training and evaluation, and the training patch sampler.

Image sources (``DATASETS.SR.TRAIN`` / ``DATASETS.SR.TEST`` entries):

- a folder: every ``.png``, ``.jpg``, ``.jpeg``, ``.bmp``, ``.tif``, ``.tiff`` or ``.webp`` in it
  (not recursive), sorted by name;
- an image file;
- ``bundled:train`` / ``bundled:test``: real photographs shipped by installed packages, found
  offline, in two disjoint sets (no file in both, and no stereo or sequence partner of a test
  photo in train). ``bundled:test`` is scikit-image's astronaut, chelsea, coffee and rocket and
  scikit-learn's china and flower, plus, from Debian's ``opencv-doc`` when it is installed
  (``/usr/share/doc/opencv-doc``), Set5's butterfly, Set14's baboon and ten more colour photos
  (aero1, apple, building, fruits, home, leuvenA, messi5, orange, squirrel_cls, graf1).
  ``bundled:train`` is scikit-image's other natural photographs (brick, camera, coins, grass,
  gravel, hubble_deep_field, ihc, moon, motorcycle_left, motorcycle_right, retina, text;
  grayscale ones are replicated to RGB), plus, where installed, ten other colour photos of
  ``opencv-doc`` and the twelve nature photographs of Debian's ``mate-backgrounds``
  (``/usr/share/backgrounds/mate/nature``).

Images are read as RGB uint8 (grayscale replicated, alpha dropped, 16-bit scaled to 8).

:class:`SRPatchSampler` draws training pairs: a uniformly chosen image, a random ``patch_size``
crop, optionally a random horizontal flip and rotation by a multiple of 90 degrees (the 8
dihedral variants CAJNN uses), then the degradation pipeline on the crop gives the LR patch.
Batch ``k`` is a pure function of ``(seed, k)`` (its generator is seeded with both), so a resumed
run sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import glob
import logging
import os
from collections.abc import Sequence

import cv2
import numpy as np
import torch
from detectron2.config import configurable

from featsr_d2.core.degradations import Degradation
from featsr_d2.data.sr_degradation import build_sr_degradation
from featsr_d2.utils.image import rgb_to_tensor, swap_rgb_bgr
from featsr_d2.utils.packages import package_dir

__all__ = [
    "SRPatchSampler",
    "bundled_photos",
    "read_rgb",
    "resolve_sr_images",
]

logger = logging.getLogger(__name__)

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
_SKIMAGE_TEST = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg")
_SKLEARN_TEST = ("china.jpg", "flower.jpg")
_OPENCV_DOC = "/usr/share/doc/opencv-doc/examples"
_OPENCV_DOC_TEST = ("dnn_superres/butterfly.png", "data/baboon.jpg") + tuple(  # Set5, Set14
    "data/" + f
    for f in (
        "aero1.jpg", "apple.jpg", "building.jpg", "fruits.jpg", "home.jpg", "leuvenA.jpg",
        "messi5.jpg", "orange.jpg", "squirrel_cls.jpg", "graf1.png",
    )
)  # fmt: skip
# Colour photos with no partner among the test ones (aero3, graf3, leuvenB and the stereo pairs
# left/right of other scenes stay out).
_OPENCV_DOC_TRAIN = tuple(
    "data/" + f
    for f in (
        "aloeL.jpg", "board.jpg", "chicky_512.png", "ela_original.jpg", "HappyFish.jpg",
        "left.jpg", "pca_test1.jpg", "rubberwhale1.png", "smarties.png", "stuff.jpg",
    )
)  # fmt: skip
_MATE_NATURE = "/usr/share/backgrounds/mate/nature"
_SKIMAGE_TRAIN = (
    "brick.png", "camera.png", "coins.png", "grass.png", "gravel.png", "hubble_deep_field.jpg",
    "ihc.png", "moon.png", "motorcycle_left.png", "motorcycle_right.png", "retina.jpg", "text.png",
)  # fmt: skip


def bundled_photos(split: str) -> list[str]:
    """Paths of the bundled photographs of ``split`` ("train" or "test") present here."""
    if split not in ("train", "test"):
        raise ValueError(f"bundled photo split must be 'train' or 'test', got {split!r}")
    paths = []
    skimage_dir = package_dir("skimage")
    sklearn_dir = package_dir("sklearn")
    if split == "train":
        if skimage_dir:
            paths += [os.path.join(skimage_dir, "data", f) for f in _SKIMAGE_TRAIN]
        paths += [os.path.join(_OPENCV_DOC, f) for f in _OPENCV_DOC_TRAIN]
        if os.path.isdir(_MATE_NATURE):
            paths += sorted(glob.glob(os.path.join(_MATE_NATURE, "*.jpg")))
    else:
        if skimage_dir:
            paths += [os.path.join(skimage_dir, "data", f) for f in _SKIMAGE_TEST]
        if sklearn_dir:
            paths += [os.path.join(sklearn_dir, "datasets", "images", f) for f in _SKLEARN_TEST]
        paths += [os.path.join(_OPENCV_DOC, f) for f in _OPENCV_DOC_TEST]
    return [p for p in paths if os.path.isfile(p)]


def resolve_sr_images(entries: Sequence[str]) -> list[str]:
    """The image paths named by ``entries`` (folders, files, ``bundled:train|test``), in order,
    without duplicates.

    Raises:
        FileNotFoundError: an entry does not exist, or the entries name no image.
    """
    paths: list[str] = []
    for entry in entries:
        if entry.startswith("bundled:"):
            paths += bundled_photos(entry.split(":", 1)[1])
        elif os.path.isdir(entry):
            found = [
                p
                for p in sorted(glob.glob(os.path.join(entry, "*")))
                if p.lower().endswith(IMAGE_EXTS) and os.path.isfile(p)
            ]
            paths += found
        elif os.path.isfile(entry):
            paths.append(entry)
        else:
            raise FileNotFoundError(f"SR image source {entry!r} is neither a folder nor a file")
    unique = list(dict.fromkeys(paths))
    if not unique:
        raise FileNotFoundError(f"no images found in {list(entries)}")
    return unique


def read_rgb(path: str) -> np.ndarray:
    """An image file as RGB uint8 (H, W, 3).

    Raises:
        ValueError: the file cannot be decoded.
    """
    image = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot decode image {path}")
    if image.dtype == np.uint16:
        image = (image.astype(np.float64) / 257.0 + 0.5).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise ValueError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    if image.shape[2] != 3:
        raise ValueError(f"{path}: unsupported channel count {image.shape[2]}")
    return swap_rgb_bgr(image)  # OpenCV reads BGR


class SRPatchSampler:
    """Random (LR, HR) training patches from high-resolution images; see the module docstring."""

    @configurable
    def __init__(
        self,
        *,
        image_paths: Sequence[str],
        scale: int,
        patch_size: int,
        batch_size: int,
        degradation: Degradation,
        augment: bool = True,
        seed: int = 0,
    ):
        """
        Args:
            image_paths: high-resolution images (read once, kept in memory).
            scale: the SR scale; ``patch_size`` must be a multiple of it.
            patch_size: side of the HR patch.
            batch_size: patches per batch.
            degradation: HR patch -> LR patch (downscaling by ``scale``).
            augment: random horizontal flips and 90-degree rotations.
            seed: batch ``k`` depends only on ``(seed, k)``.
        """
        if patch_size % scale:
            raise ValueError(f"patch_size {patch_size} is not a multiple of the scale {scale}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.scale = scale
        self.patch_size = patch_size
        self.batch_size = batch_size
        self.degradation = degradation
        self.augment = augment
        self.seed = seed
        self.images = []
        for path in image_paths:
            image = read_rgb(path)
            if min(image.shape[:2]) < patch_size:
                logger.warning(
                    "skipping %s: %dx%d is smaller than the %d px patch",
                    path, image.shape[1], image.shape[0], patch_size,
                )  # fmt: skip
                continue
            self.images.append(image)
        if not self.images:
            raise ValueError(f"no training image is at least {patch_size} px on each side")

    @classmethod
    def from_config(cls, cfg):
        return {
            "image_paths": resolve_sr_images(cfg.DATASETS.SR.TRAIN),
            "scale": cfg.MODEL.SR.SCALE,
            "patch_size": cfg.INPUT.SR.PATCH_SIZE,
            "batch_size": cfg.SOLVER.IMS_PER_BATCH,
            "degradation": build_sr_degradation(cfg),
            "augment": cfg.INPUT.SR.AUGMENT,
            "seed": cfg.INPUT.SR.SEED,
        }

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One (LR, HR) pair of RGB uint8 patches."""
        image = self.images[int(rng.integers(len(self.images)))]
        h, w = image.shape[:2]
        p = self.patch_size
        y = int(rng.integers(h - p + 1))
        x = int(rng.integers(w - p + 1))
        hr = image[y : y + p, x : x + p]
        if self.augment:
            if rng.random() < 0.5:
                hr = hr[:, ::-1]
            hr = np.rot90(hr, int(rng.integers(4)))
        hr = np.ascontiguousarray(hr)
        lr = self.degradation(hr, rng)
        expected = (p // self.scale, p // self.scale, 3)
        if lr.shape != expected:
            raise ValueError(f"the degradation made {lr.shape} from a {p} px patch, not {expected}")
        return lr, hr

    def batch(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``iteration``: (LR (N, 3, p/s, p/s), HR (N, 3, p, p)), float in [0, 1]."""
        rng = np.random.default_rng([self.seed, iteration])
        pairs = [self.sample(rng) for _ in range(self.batch_size)]
        return rgb_to_tensor([lr for lr, _ in pairs]), rgb_to_tensor([hr for _, hr in pairs])
