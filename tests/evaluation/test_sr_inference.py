"""featsr_d2.evaluation.sr_inference: the whole-image path is the network on the tensor of the
image; tiles with enough context give the whole-image result; the model's mode is restored."""

import numpy as np
import pytest
import torch
from torch import nn

from featsr_d2.evaluation.sr_inference import super_resolve, super_resolve_tensor
from featsr_d2.utils.image import rgb_to_tensor, tensor_to_rgb


def _net() -> nn.Module:
    """x2 upscaling whose receptive field is one LR pixel on each side."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(3, 3, 3, padding=1))


def test_whole_image_is_the_network_on_the_tensor():
    net = _net().train()
    lr = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    out = super_resolve(net, lr)
    with torch.no_grad():
        expected = tensor_to_rgb(net.eval()(rgb_to_tensor(lr))[0])
    assert np.array_equal(out, expected) and out.shape == (18, 14, 3)
    net.train()
    super_resolve(net, lr)
    assert net.training  # restored


@pytest.mark.parametrize("tile", [1, 3, 4, 8])
def test_tiles_with_context_equal_the_whole_image(tile):
    net = _net()
    x = torch.rand(2, 3, 10, 7, generator=torch.Generator().manual_seed(1))
    whole = super_resolve_tensor(net, x)
    tiled = super_resolve_tensor(net, x, tile=tile, tile_pad=1)
    assert tiled.shape == whole.shape == (2, 3, 20, 14)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)
    without_context = super_resolve_tensor(net, x, tile=tile, tile_pad=0)
    assert not torch.allclose(without_context, whole, atol=1e-6)  # the context is what matters


def test_bad_tile_arguments():
    with pytest.raises(ValueError, match="non-negative"):
        super_resolve_tensor(_net(), torch.zeros(1, 3, 4, 4), tile=-1)
