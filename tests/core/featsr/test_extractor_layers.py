"""The SR target extractor's layers on plain PyTorch modules: a convolution whose norm is a separate
layer (torchvision's or mmdet's ResNet) gives what a Detectron2-style convolution carrying the norm
gives, fused or not, in both placements; the pooling follows the norm."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from featsr_d2.core.featsr import atrous_conv, atrous_max_pool, strided_max_pool


class _ConvWithNorm(nn.Conv2d):
    """A convolution carrying its norm and activation, as Detectron2's ``Conv2d``."""

    def __init__(self, *args, norm=None, activation=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.norm = norm
        self.activation = activation


def _frozen_bn(channels, seed):
    g = torch.Generator().manual_seed(seed)
    bn = nn.BatchNorm2d(channels).eval()
    with torch.no_grad():
        bn.weight.copy_(torch.randn(channels, generator=g))  # negative scales too
        bn.bias.copy_(torch.randn(channels, generator=g))
        bn.running_mean.copy_(torch.randn(channels, generator=g))
        bn.running_var.copy_(torch.rand(channels, generator=g) + 0.5)
    return bn


@pytest.mark.parametrize("fused", [False, True])
@pytest.mark.parametrize("aligned", [True, False])
def test_a_separate_norm_equals_a_carried_one(fused, aligned):
    torch.manual_seed(0)
    bn = _frozen_bn(6, seed=1)
    carried = _ConvWithNorm(4, 6, 3, stride=2, padding=1, bias=False, norm=bn)
    plain = nn.Conv2d(4, 6, 3, stride=2, padding=1, bias=False)
    plain.weight.data.copy_(carried.weight.data)
    x = torch.randn(2, 4, 15, 18)
    with torch.no_grad():
        ours = atrous_conv(plain, x, norm=bn, activation=nn.ReLU(), fused=fused, aligned=aligned)
        theirs = F.relu(atrous_conv(carried, x, fused=fused, aligned=aligned))
        # The definition: conv at stride 1, dilation 2, then the norm, the pooling, the ReLU.
        y = bn(F.conv2d(x, plain.weight, None, 1, 2, 2))
        reference = F.relu(strided_max_pool(y, (2, 2), aligned=aligned))
    assert ours.shape == plain(x).shape  # the backbone's size on the 1.0x image
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    pooled_first = F.relu(bn(strided_max_pool(F.conv2d(x, plain.weight, None, 1, 2, 2), (2, 2),
                                              aligned=aligned)))  # fmt: skip
    assert not torch.allclose(ours, pooled_first)  # a negative BN scale: the order matters


def test_windows_and_doubled_pooling():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # aligned: windows {2o - 1, 2o} -> rows / columns {-1, 0} and {1, 2}
    assert strided_max_pool(x, (2, 2), aligned=True).flatten().tolist() == [0, 2, 8, 10]
    assert strided_max_pool(x, (2, 2), aligned=False).flatten().tolist() == [5, 7, 13, 15]
    # ResNet's stem pool (3x3, stride 2, padding 1) -> a 6x6 window at stride 2, output 2x2
    assert atrous_max_pool(x, 3, 2, 1).shape == F.max_pool2d(x, 3, 2, 1).shape
