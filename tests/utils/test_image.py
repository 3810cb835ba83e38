"""featsr_d2.utils.image: the conversions between the detector format, RGB float tensors and RGB
uint8 arrays invert each other where they should, and round as documented."""

import numpy as np
import pytest
import torch

from featsr_d2.utils.image import (
    detector_to_rgb,
    detector_to_rgb_tensor,
    rgb_tensor_to_detector,
    rgb_to_tensor,
    round_to_uint8,
    swap_rgb_bgr,
    tensor_to_rgb,
    to_detector_format,
)


def _rgb() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (5, 6, 3), dtype=np.uint8)


@pytest.mark.parametrize("fmt", ["RGB", "BGR"])
def test_detector_round_trips(fmt):
    rgb = _rgb()
    chw = torch.from_numpy(rgb).permute(2, 0, 1)
    image = to_detector_format(chw, fmt)
    assert torch.equal(image[0], chw[2] if fmt == "BGR" else chw[0])
    assert np.array_equal(detector_to_rgb(image, fmt), rgb)
    x = detector_to_rgb_tensor(image, fmt)
    assert x.dtype == torch.float32 and torch.equal(x, chw.float() / 255.0)
    assert torch.allclose(rgb_tensor_to_detector(x, fmt), image.float(), atol=1e-4)
    assert np.array_equal(tensor_to_rgb(x), rgb)


def test_array_and_tensor_conventions():
    rgb = _rgb()
    batch = rgb_to_tensor([rgb, rgb])
    assert batch.shape == (2, 3, 5, 6) and float(batch.max()) <= 1.0
    assert np.array_equal(tensor_to_rgb(batch[1]), rgb)
    assert np.array_equal(swap_rgb_bgr(swap_rgb_bgr(rgb)), rgb)
    assert swap_rgb_bgr(rgb)[0, 0, 0] == rgb[0, 0, 2]
    assert round_to_uint8(np.array([-3.0, 0.5, 1.49, 254.5, 300.0])).tolist() == [0, 1, 1, 255, 255]
    assert tensor_to_rgb(torch.full((3, 1, 1), 2.0)).tolist() == [[[255, 255, 255]]]
    with pytest.raises(ValueError, match="RGB or BGR"):
        detector_to_rgb(torch.zeros(3, 2, 2), "YUV-BT.601")
