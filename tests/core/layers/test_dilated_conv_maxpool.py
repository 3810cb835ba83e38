"""The fused dilated conv + affine + ReLU + max pool against F.conv2d + F.max_pool2d."""

import functools

import pytest
import torch
import torch.nn.functional as F
from detectron2.layers import Conv2d, FrozenBatchNorm2d
from torch import nn

from featsr_d2.core.layers import (
    DilatedConvMaxPool2d,
    compiled,
    dilated_conv_maxpool2d,
    dilated_conv_maxpool2d_reference,
    dilated_conv_maxpool2d_tiled,
    has_compiled_ops,
    is_frozen_batch_norm,
    norm_to_affine,
)

requires_ops = pytest.mark.skipif(not has_compiled_ops(), reason="featsr_d2._C is not built")
requires_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and compiled.build_info()["has_cuda"]),
    reason="needs a GPU and featsr_d2._C built with CUDA",
)

# (N, C_in, H, W, C_out, kernel, padding, dilation, groups, pool)
CASES = [
    (2, 3, 21, 19, 4, 7, 6, 2, 1, 2),  # ResNet stem: 7x7, dilation 2
    (1, 4, 17, 16, 6, 3, 2, 2, 1, 2),  # bottleneck 3x3, dilation 2
    (2, 4, 15, 18, 4, 3, 2, 2, 2, 2),  # grouped (ResNeXt)
    (1, 6, 13, 14, 5, 1, 0, 1, 1, 2),  # 1x1 (stride in the 1x1 conv, MSRA ResNets)
    (1, 3, 16, 17, 2, 3, (1, 3), (1, 3), 1, 3),  # asymmetric padding / dilation, pool 3
    (2, 5, 14, 15, 5, 3, 2, 2, 5, 2),  # depthwise (MobileNetV2), the direct small-group product
]
# Every case with every pool_offset its pool allows (conv sizes odd and even in each).
CASE_OFFSETS = [(case, offset) for case in CASES for offset in range(case[-1])]


def make_args(case, dtype=torch.float64, bias=True, affine=True, seed=0):
    n, cin, h, w, cout, k, pad, dil, groups, pool = case
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, cin, h, w, generator=g, dtype=dtype)
    weight = torch.randn(cout, cin // groups, k, k, generator=g, dtype=dtype)
    b = torch.randn(cout, generator=g, dtype=dtype) if bias else None
    scale = shift = None
    if affine:  # half of the scales negative: the affine turns those maxima into minima
        scale = torch.randn(cout, generator=g, dtype=dtype)
        scale[::2] = -scale[::2].abs()
        shift = torch.randn(cout, generator=g, dtype=dtype)
    return x, weight, b, pad, dil, pool, scale, shift, groups


def run(fn, x, weight, b, pad, dil, pool, scale, shift, groups, relu, ceil_mode=False, **kwargs):
    return fn(
        x,
        weight,
        b,
        pad,
        dil,
        pool,
        scale=scale,
        shift=shift,
        relu=relu,
        groups=groups,
        ceil_mode=ceil_mode,
        **kwargs,
    )


def test_hand_computed():
    x = torch.arange(1.0, 17.0).view(1, 1, 4, 4)
    # A 3x3 kernel with only its top-left tap, dilation 2, padding 2: conv(y, x) = x[y-2, x-2].
    weight = torch.zeros(1, 1, 3, 3)
    weight[0, 0, 0, 0] = 1.0
    out = dilated_conv_maxpool2d(x, weight, None, padding=2, dilation=2, pool=2)
    # conv map [[0,0,0,0],[0,0,0,0],[0,0,1,2],[0,0,5,6]] -> 2x2 max pool
    assert torch.equal(out, torch.tensor([[[[0.0, 0.0], [0.0, 6.0]]]]))
    # Negative scale: max(-v) = -min(v); with shift 10 and bias 1: 10 - (v + 1).
    out = dilated_conv_maxpool2d(
        x,
        weight,
        torch.tensor([1.0]),
        2,
        2,
        2,
        scale=torch.tensor([-1.0]),
        shift=torch.tensor([10.0]),
    )
    assert torch.equal(out, torch.tensor([[[[9.0, 9.0], [9.0, 8.0]]]]))
    # ReLU after a shift of -5: max(conv - 5, 0) per element, then the max pool.
    out = dilated_conv_maxpool2d(
        x, weight, None, 2, 2, 2, scale=torch.tensor([1.0]), shift=torch.tensor([-5.0]), relu=True
    )
    assert torch.equal(out, torch.tensor([[[[0.0, 0.0], [0.0, 1.0]]]]))
    # Floor mode: a 5x5 conv map pools to 2x2 (last row and column dropped); ceil mode keeps
    # the partial windows: [[6, 8, 9], [16, 18, 19], [21, 23, 24]].
    five = torch.arange(25.0).view(1, 1, 5, 5)
    out = dilated_conv_maxpool2d(five, torch.ones(1, 1, 1, 1))
    assert torch.equal(out, torch.tensor([[[[6.0, 8.0], [16.0, 18.0]]]]))
    out = dilated_conv_maxpool2d(five, torch.ones(1, 1, 1, 1), ceil_mode=True)
    expected = torch.tensor([[6.0, 8.0, 9.0], [16.0, 18.0, 19.0], [21.0, 23.0, 24.0]])
    assert torch.equal(out, expected.view(1, 1, 3, 3))
    # With a negative scale the partial window's max is over its existing elements only.
    out = dilated_conv_maxpool2d(
        five, torch.ones(1, 1, 1, 1), scale=-torch.ones(1), shift=torch.zeros(1), ceil_mode=True
    )
    expected = -torch.tensor([[0.0, 2.0, 4.0], [10.0, 12.0, 14.0], [20.0, 22.0, 24.0]])
    assert torch.equal(out, expected.view(1, 1, 3, 3))


@pytest.mark.parametrize("fn", [dilated_conv_maxpool2d, dilated_conv_maxpool2d_reference])
def test_hand_computed_pool_offset(fn):
    """pool_offset 1: pooled row o covers conv rows {2o - 1, 2o} (row -1 does not exist)."""
    one = torch.ones(1, 1, 1, 1)
    four = torch.arange(16.0).view(1, 1, 4, 4)
    # Rows and columns {0}, {1, 2}; floor mode drops row / column 3.
    out = fn(four, one, pool_offset=1)
    assert torch.equal(out, torch.tensor([[[[0.0, 2.0], [8.0, 10.0]]]]))
    # Ceil mode keeps {3}: ceil((4 + 1) / 2) = 3 windows a side.
    out = fn(four, one, pool_offset=1, ceil_mode=True)
    expected = torch.tensor([[0.0, 2.0, 3.0], [8.0, 10.0, 11.0], [12.0, 14.0, 15.0]])
    assert torch.equal(out, expected.view(1, 1, 3, 3))
    # A negative scale: the minima of the same windows, negated.
    out = fn(four, one, scale=-torch.ones(1), shift=torch.zeros(1), pool_offset=1, ceil_mode=True)
    expected = -torch.tensor([[0.0, 1.0, 3.0], [4.0, 5.0, 7.0], [12.0, 13.0, 15.0]])
    assert torch.equal(out, expected.view(1, 1, 3, 3))
    # Floor mode on 5 rows: {0}, {1, 2}, {3, 4}, ceil(5 / 2) = 3, the backbone's stride-2 size.
    # The gradient goes to each window's maximum, its bottom-right element.
    five = torch.arange(25.0).view(1, 1, 5, 5).requires_grad_()
    out = fn(five, one, pool_offset=1)
    expected = torch.tensor([[0.0, 2.0, 4.0], [10.0, 12.0, 14.0], [20.0, 22.0, 24.0]])
    assert torch.equal(out, expected.view(1, 1, 3, 3))
    out.backward(torch.arange(1.0, 10.0).view(1, 1, 3, 3))
    expected = torch.tensor(
        [
            [1.0, 0.0, 2.0, 0.0, 3.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [4.0, 0.0, 5.0, 0.0, 6.0],
            [0.0, 0.0, 0.0, 0.0, 0.0],
            [7.0, 0.0, 8.0, 0.0, 9.0],
        ]
    )
    assert torch.equal(five.grad, expected.view(1, 1, 5, 5))
    # A window whose only existing element is -inf: max_pool2d keeps its first element, the -inf
    # padding, so the gradient goes nowhere; the other windows are unaffected.
    x = four.clone()
    x[0, 0, 0, 0] = float("-inf")
    x.requires_grad_()
    out = fn(x, one, pool_offset=1)
    assert torch.equal(out, torch.tensor([[[[float("-inf"), 2.0], [8.0, 10.0]]]]))
    out.backward(torch.ones_like(out))
    expected = torch.zeros(4, 4)
    expected[0, 2] = expected[2, 0] = expected[2, 2] = 1.0
    assert torch.equal(x.grad, expected.view(1, 1, 4, 4))


@pytest.mark.parametrize("offset", [-1, 2, 3])
def test_pool_offset_out_of_range(offset):
    x, weight = torch.randn(1, 1, 6, 6), torch.randn(1, 1, 1, 1)
    fns = [dilated_conv_maxpool2d, dilated_conv_maxpool2d_reference, dilated_conv_maxpool2d_tiled]
    for fn in fns:
        with pytest.raises(ValueError, match=r"pool_offset must be in \[0, pool\)"):
            fn(x, weight, pool=2, pool_offset=offset)
    conv = nn.Conv2d(1, 1, 3, stride=2, padding=1)
    with pytest.raises(ValueError, match="pool_offset"):
        DilatedConvMaxPool2d(conv, pool=2, pool_offset=offset)


@requires_ops
@pytest.mark.parametrize("offset", [-1, 2])
def test_op_rejects_pool_offset_out_of_range(offset):
    x, weight, grad = torch.randn(1, 1, 6, 6), torch.randn(1, 1, 1, 1), torch.ones(1, 1, 3, 3)
    rest = ([0, 0], [1, 1], 1, 2, False, False)  # padding, dilation, groups, pool, relu, ceil_mode
    ops = torch.ops.featsr_d2
    with pytest.raises(RuntimeError, match=r"pool_offset must be in \[0, pool\)"):
        ops.dilated_conv_maxpool2d(x, weight, None, None, None, *rest, offset)
    with pytest.raises(RuntimeError, match=r"pool_offset must be in \[0, pool\)"):
        ops._dilated_conv_maxpool2d_backward(
            grad, x, weight, None, None, None, *rest, [True] * 5, offset
        )


@requires_ops
@pytest.mark.parametrize("case, offset", CASE_OFFSETS)
@pytest.mark.parametrize("relu", [False, True])
@pytest.mark.parametrize("affine", [False, True])
@pytest.mark.parametrize("ceil_mode", [False, True])
def test_forward_backward_equal_reference(case, offset, relu, affine, ceil_mode):
    args = make_args(case, affine=affine, bias=case[5] != 1)
    inputs = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
    ref_inputs = [a.clone().requires_grad_() if isinstance(a, torch.Tensor) else a for a in args]
    out = run(dilated_conv_maxpool2d, *inputs, relu, ceil_mode, pool_offset=offset)
    ref = run(dilated_conv_maxpool2d_reference, *ref_inputs, relu, ceil_mode, pool_offset=offset)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    grad = torch.randn_like(ref)
    out.backward(grad)
    ref.backward(grad)
    for a, r in zip(inputs, ref_inputs):
        if isinstance(a, torch.Tensor):
            torch.testing.assert_close(a.grad, r.grad, rtol=1e-9, atol=1e-9)


@requires_ops
def test_float32_equals_reference():
    x, weight, b, pad, dil, pool, scale, shift, groups = make_args(CASES[0], dtype=torch.float32)
    out = run(dilated_conv_maxpool2d, x, weight, b, pad, dil, pool, scale, shift, groups, True)
    ref = run(
        dilated_conv_maxpool2d_reference, x, weight, b, pad, dil, pool, scale, shift, groups, True
    )
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-4)


@requires_ops
@pytest.mark.parametrize("contiguous", [True, False])
@pytest.mark.parametrize("offset", [0, 1])
def test_gradcheck(contiguous, offset):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 6, 11, 10, generator=g, dtype=torch.float64).transpose(2, 3)[:, ::2]
    if contiguous:
        x = x.contiguous()
    assert x.is_contiguous() == contiguous
    x = x.detach().requires_grad_()
    weight = torch.randn(4, 3, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    scale = torch.tensor([1.5, -0.7, 0.3, -2.0], dtype=torch.float64, requires_grad=True)
    shift = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda *t: dilated_conv_maxpool2d(
            t[0], t[1], t[2], 2, 2, 2, scale=t[3], shift=t[4], relu=True, pool_offset=offset
        ),
        (x, weight, b, scale, shift),
        eps=1e-6,
        atol=1e-7,
    )


@requires_ops
def test_opcheck():
    x, weight, b, pad, dil, pool, scale, shift, groups = make_args((1, 2, 9, 8, 3, 3, 2, 2, 1, 2))
    args = [t.requires_grad_() for t in (x, weight, b, scale, shift)]
    torch.library.opcheck(
        torch.ops.featsr_d2.dilated_conv_maxpool2d.default,
        (*args, [2, 2], [2, 2], 1, 2, True, False),
    )
    torch.library.opcheck(
        torch.ops.featsr_d2.dilated_conv_maxpool2d.default,
        (x, weight, None, None, None, [1, 0], [1, 1], 1, 2, False, True),
    )
    # pool_offset 1, floor and ceil mode.
    torch.library.opcheck(
        torch.ops.featsr_d2.dilated_conv_maxpool2d.default,
        (*args, [2, 2], [2, 2], 1, 2, True, False, 1),
    )
    torch.library.opcheck(
        torch.ops.featsr_d2.dilated_conv_maxpool2d.default,
        (x, weight, None, None, None, [1, 0], [1, 1], 1, 2, False, True, 1),
    )


@requires_ops
@pytest.mark.parametrize("offset, out_hw", [(0, (8, 8)), (1, (9, 8))])
def test_empty_batch(offset, out_hw):
    args = make_args(CASES[1])  # conv output 17x16
    x = args[0][:0].clone().requires_grad_()
    weight = args[1].requires_grad_()
    out = run(dilated_conv_maxpool2d, x, *args[1:], True, False, pool_offset=offset)
    ref = run(dilated_conv_maxpool2d_reference, x, *args[1:], True, False, pool_offset=offset)
    assert out.shape == ref.shape == (0, 6, *out_hw)
    out.sum().backward()
    assert x.grad.shape == x.shape
    assert torch.equal(weight.grad, torch.zeros_like(weight))
    with pytest.raises(RuntimeError, match="empty"):
        dilated_conv_maxpool2d(torch.randn(1, 1, 1, 5), torch.ones(1, 1, 1, 1))


@requires_ops
@pytest.mark.parametrize("offset", [0, 1])
def test_inputs_unchanged(offset):
    args = make_args(CASES[0])
    tensors = [a for a in args if isinstance(a, torch.Tensor)]
    before = [t.clone() for t in tensors]
    x, weight = args[0].requires_grad_(), args[1].requires_grad_()
    out = run(dilated_conv_maxpool2d, *args, True, False, pool_offset=offset)
    grad = torch.randn_like(out)
    grad0 = grad.clone()
    out.backward(grad)
    assert all(torch.equal(t, t0) for t, t0 in zip(tensors, before))
    assert torch.equal(grad, grad0)
    assert x.grad is not None and weight.grad is not None


@requires_ops
@pytest.mark.parametrize("threads", [1, 2])
def test_result_independent_of_threads(threads):
    prev = torch.get_num_threads()
    args = make_args(CASES[1])
    x = args[0].requires_grad_()
    try:
        torch.set_num_threads(threads)
        out = run(dilated_conv_maxpool2d, *args, True)
        out.backward(torch.ones_like(out))
    finally:
        torch.set_num_threads(prev)
    ref_x = args[0].detach().clone().requires_grad_()
    ref = run(dilated_conv_maxpool2d_reference, ref_x, *args[1:], True)
    ref.backward(torch.ones_like(ref))
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(x.grad, ref_x.grad, rtol=1e-9, atol=1e-9)


def _backbone_conv(kernel, stride, cin=3, cout=8, seed=0):
    """A Detectron2 Conv2d with a FrozenBatchNorm2d holding some negative weights."""
    torch.manual_seed(seed)
    norm = FrozenBatchNorm2d(cout)
    norm.weight.copy_(torch.randn(cout))
    norm.bias.copy_(torch.randn(cout))
    norm.running_mean.copy_(torch.randn(cout))
    norm.running_var.copy_(torch.rand(cout) + 0.5)
    conv = Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False, norm=norm)
    return conv


def test_module_fuses_frozen_bn_and_borrows_weights():
    conv = _backbone_conv(7, 2)
    assert (conv.norm.weight < 0).any()
    module = DilatedConvMaxPool2d(conv, dilation=2, pool=2, norm=conv.norm, relu=True)
    assert list(module.parameters()) == [] and module.padding == (6, 6)
    assert "dilation=(2, 2)" in repr(module) and "FrozenBatchNorm2d" in repr(module)
    x = torch.randn(2, 3, 20, 22)
    # conv (stride 1, dilation 2) -> FrozenBN -> ReLU -> 2x2 max pool, unfused
    ref = F.max_pool2d(F.relu(conv.norm(F.conv2d(x, conv.weight, None, 1, 6, 2))), 2, 2)
    torch.testing.assert_close(module(x), ref, rtol=1e-5, atol=1e-5)
    scale, shift = norm_to_affine(conv.norm)
    v = torch.randn(1, 8, 3, 3)
    torch.testing.assert_close(conv.norm(v), v * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1))
    # The module reads the conv's current weights.
    with torch.no_grad():
        conv.weight.mul_(2)
    ref2 = F.max_pool2d(F.relu(conv.norm(F.conv2d(x, conv.weight, None, 1, 6, 2))), 2, 2)
    torch.testing.assert_close(module(x), ref2, rtol=1e-5, atol=1e-5)


def test_module_matches_the_extractor_order_in_ceil_mode():
    # The target extractor's order: conv (stride 1, dilation 2) -> FrozenBN -> max pool with the
    # conv's stride (ceil mode, so odd sizes match the backbone) -> ReLU.
    conv = _backbone_conv(3, 2, cin=4, cout=6, seed=1)
    module = DilatedConvMaxPool2d(conv, norm=conv.norm, relu=True, ceil_mode=True)
    x = torch.randn(1, 4, 15, 17)
    y = conv.norm(F.conv2d(x, conv.weight, None, 1, 2, 2))
    ref = F.relu(F.max_pool2d(y, 2, 2, ceil_mode=True))
    assert ref.shape[-2:] == conv(x).shape[-2:] == (8, 9)  # the backbone's stride-2 sizes
    torch.testing.assert_close(module(x), ref, rtol=1e-5, atol=1e-5)
    assert "ceil_mode=True" in repr(module)


@pytest.mark.parametrize("size", [(15, 17), (16, 14)])
def test_module_pool_offset_keeps_the_backbone_sizes(size):
    # The extractor's configuration: 2x2 windows {2o - 1, 2o} (pool_offset 1), floor mode. The
    # output has the backbone's stride-2 size, odd or even, and equals the unfused definition.
    conv = _backbone_conv(3, 2, cin=4, cout=6, seed=2)
    module = DilatedConvMaxPool2d(conv, norm=conv.norm, relu=True, pool_offset=1)
    assert "pool_offset=1, ceil_mode=False" in repr(module)
    x = torch.randn(1, 4, *size)
    y = F.relu(conv.norm(F.conv2d(x, conv.weight, None, 1, 2, 2)))
    ref = F.max_pool2d(F.pad(y, (1, 0, 1, 0), value=float("-inf")), 2, 2)
    assert ref.shape[-2:] == conv(x).shape[-2:]
    torch.testing.assert_close(module(x), ref, rtol=1e-5, atol=1e-5)
    # An unfusable norm (batch statistics) runs unfused, with the same windows.
    bn = nn.BatchNorm2d(6).train()
    module = DilatedConvMaxPool2d(conv, norm=bn, pool_offset=1)
    y = nn.BatchNorm2d(6).train()(F.conv2d(x, conv.weight, None, 1, 2, 2))
    ref = F.max_pool2d(F.pad(y, (1, 0, 1, 0), value=float("-inf")), 2, 2)
    torch.testing.assert_close(module(x), ref)


def test_module_unfusable_norm_runs_unfused():
    conv = nn.Conv2d(3, 4, 3, stride=2, padding=1)
    bn = nn.BatchNorm2d(4).train()  # batch statistics: depend on the whole pre-pool map
    assert norm_to_affine(bn) is None
    module = DilatedConvMaxPool2d(conv, norm=bn)
    x = torch.randn(2, 3, 12, 12)
    ref_bn = nn.BatchNorm2d(4).train()
    ref = F.max_pool2d(ref_bn(F.conv2d(x, conv.weight, conv.bias, 1, 2, 2)), 2, 2)
    torch.testing.assert_close(module(x), ref)
    bn.eval()  # running statistics: fusable
    assert norm_to_affine(bn) is not None
    ref = F.max_pool2d(bn(F.conv2d(x, conv.weight, conv.bias, 1, 2, 2)), 2, 2)
    torch.testing.assert_close(module(x), ref, rtol=1e-5, atol=1e-5)


class _TrainableStatsNorm(nn.Module):
    """A norm outside PyTorch's classes with a trainable affine and running statistics (as mmcv's
    SyncBatchNorm): batch statistics in training mode, running ones in eval mode."""

    def __init__(self, channels):
        super().__init__()
        self.weight = nn.Parameter(torch.rand(channels) + 0.5)
        self.bias = nn.Parameter(torch.randn(channels))
        self.register_buffer("running_mean", torch.randn(channels))
        self.register_buffer("running_var", torch.rand(channels) + 0.5)
        self.eps = 1e-5

    def forward(self, v):
        return F.batch_norm(v, self.running_mean, self.running_var, self.weight, self.bias,
                            self.training, 0.0, self.eps)  # fmt: skip


def test_frozen_batch_norms_are_recognized_without_their_classes():
    """Detectron2's and torchvision's FrozenBatchNorm2d fold into the same affine as their own
    forward; a trainable norm only in eval mode; PyTorch's own norms by their mode; GroupNorm and
    anything without running statistics never."""
    import torchvision

    g = torch.Generator().manual_seed(0)
    v = torch.randn(2, 6, 3, 3, generator=g)
    for frozen in (FrozenBatchNorm2d(6), torchvision.ops.FrozenBatchNorm2d(6)):
        frozen.weight.copy_(torch.randn(6, generator=g))  # negative scales too
        frozen.bias.copy_(torch.randn(6, generator=g))
        frozen.running_mean.copy_(torch.randn(6, generator=g))
        frozen.running_var.copy_(torch.rand(6, generator=g) + 0.5)
        for training in (True, False):
            frozen.train(training)
            assert is_frozen_batch_norm(frozen)
            scale, shift = norm_to_affine(frozen)
            affine = v * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1)
            torch.testing.assert_close(affine, frozen(v), rtol=1e-6, atol=1e-6)
    trainable = _TrainableStatsNorm(6)
    assert not is_frozen_batch_norm(trainable.train()) and norm_to_affine(trainable) is None
    assert is_frozen_batch_norm(trainable.eval())
    scale, shift = norm_to_affine(trainable)
    torch.testing.assert_close(v * scale.view(1, -1, 1, 1) + shift.view(1, -1, 1, 1), trainable(v))
    for other in (nn.BatchNorm2d(6).eval(), nn.GroupNorm(2, 6), nn.Identity()):
        assert not is_frozen_batch_norm(other)
    assert norm_to_affine(nn.GroupNorm(2, 6)) is None


def test_without_compiled_ops_falls_back(monkeypatch):
    args = make_args(CASES[0], dtype=torch.float32)
    fused = run(dilated_conv_maxpool2d, *args, True)
    monkeypatch.setattr(compiled, "has_compiled_ops", lambda: False)
    fallback = run(dilated_conv_maxpool2d, *args, True)
    ref = run(dilated_conv_maxpool2d_reference, *args, True)
    assert torch.equal(fallback, ref)
    torch.testing.assert_close(fused, ref, rtol=1e-5, atol=1e-4)


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("case", CASES[:3])
@pytest.mark.parametrize("offset", [0, 1])
def test_cuda_equals_cpu(dtype, case, offset):
    args = make_args(case, dtype=torch.float64)
    tol = {torch.float16: 2e-2, torch.bfloat16: 1e-1, torch.float32: 1e-4}.get(dtype, 1e-9)

    def forward_backward(device, dt):
        inputs = [
            a.to(device, dt).requires_grad_() if isinstance(a, torch.Tensor) else a for a in args
        ]
        out = run(dilated_conv_maxpool2d, *inputs, True, True, pool_offset=offset)
        out.float().sum().backward()
        grads = [a.grad.float().cpu() for a in inputs if isinstance(a, torch.Tensor)]
        return [out.float().cpu()] + grads

    cpu = forward_backward("cpu", torch.float64)
    cuda = forward_backward("cuda", dtype)
    torch.testing.assert_close(cuda[0], cpu[0], rtol=tol, atol=tol)
    if dtype in (torch.float32, torch.float64):  # reduced precision may pick another maximum
        for a, b in zip(cuda[1:], cpu[1:]):
            torch.testing.assert_close(a, b, rtol=tol * 10, atol=tol * 10)


@requires_cuda
@pytest.mark.parametrize("offset, out_hw", [(0, (4, 4)), (1, (5, 4))])
def test_cuda_gradcheck_opcheck_empty(offset, out_hw):
    x, weight, b, pad, dil, pool, scale, shift, groups = make_args((1, 2, 9, 8, 3, 3, 2, 2, 1, 2))
    ts = [t.cuda().requires_grad_() for t in (x, weight, b, scale, shift)]
    assert torch.autograd.gradcheck(
        lambda *t: dilated_conv_maxpool2d(
            t[0], t[1], t[2], 2, 2, 2, scale=t[3], shift=t[4], relu=True, pool_offset=offset
        ),
        tuple(ts),
    )
    torch.library.opcheck(
        torch.ops.featsr_d2.dilated_conv_maxpool2d.default,
        (*ts, [2, 2], [2, 2], 1, 2, True, True, offset),
    )
    out = dilated_conv_maxpool2d(ts[0][:0], ts[1], ts[2], 2, 2, 2, pool_offset=offset)
    assert out.shape == (0, 3, *out_hw)


@pytest.mark.parametrize("band_rows", [1, 2, 3, None])
@pytest.mark.parametrize("ceil_mode", [False, True])
@pytest.mark.parametrize("case, offset", CASE_OFFSETS)
def test_tiled_equals_reference(case, offset, ceil_mode, band_rows):
    """ATen's convolution on bands of pooled rows (the no-grad CPU path for large layers) equals
    the unfused definition, whatever the band height, padding, groups, pooling mode and offset."""
    args = make_args(case)
    tiled = functools.partial(dilated_conv_maxpool2d_tiled, band_rows=band_rows)
    with torch.no_grad():
        out = run(tiled, *args, True, ceil_mode, pool_offset=offset)
        ref = run(dilated_conv_maxpool2d_reference, *args, True, ceil_mode, pool_offset=offset)
    assert out.shape == ref.shape
    torch.testing.assert_close(out, ref, rtol=1e-10, atol=1e-10)
    with pytest.raises(RuntimeError, match="empty"):
        dilated_conv_maxpool2d_tiled(torch.randn(1, 1, 1, 5), torch.ones(1, 1, 1, 1))


@requires_ops
def test_without_grad_runs_tiled_and_with_grad_compiled(monkeypatch):
    """On CPU the op runs tiled without autograd and on the compiled kernel with it; both equal
    the reference."""
    from featsr_d2.core.layers import dilated_conv_maxpool as module

    calls = []
    tiled = module.dilated_conv_maxpool2d_tiled
    monkeypatch.setattr(
        module, "dilated_conv_maxpool2d_tiled", lambda *a, **k: calls.append(1) or tiled(*a, **k)
    )
    args = make_args(CASES[1], dtype=torch.float32)
    ref = run(dilated_conv_maxpool2d_reference, *args, True, True)
    with torch.no_grad():
        out = run(dilated_conv_maxpool2d, *args, True, True)
    assert calls == [1]
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    x = args[0].clone().requires_grad_()
    out = run(dilated_conv_maxpool2d, x, *args[1:], True, True)
    assert calls == [1] and out.grad_fn is not None  # the compiled kernel, differentiable
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
