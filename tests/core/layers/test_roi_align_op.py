"""featsr_d2's RoIAlign ops against torchvision: single map, multi-level, multi-map."""

import pytest
import torch
import torchvision

from featsr_d2.core.layers import (
    ROIAlign,
    compiled,
    has_compiled_ops,
    multilevel_roi_align,
    multimap_roi_align,
    roi_align,
)

requires_ops = pytest.mark.skipif(not has_compiled_ops(), reason="featsr_d2._C is not built")
requires_cuda = pytest.mark.skipif(
    not (torch.cuda.is_available() and compiled.build_info()["has_cuda"]),
    reason="needs a GPU and featsr_d2._C built with CUDA",
)


def random_rois(k, n, height, width, scale, dtype=torch.float64, outside=0.0, seed=0):
    """K boxes in image coordinates (map size / scale), some `outside` beyond the map."""
    g = torch.Generator().manual_seed(seed)
    img_h, img_w = height / scale, width / scale
    x1 = torch.rand(k, generator=g) * img_w * (1 + 2 * outside) - outside * img_w
    y1 = torch.rand(k, generator=g) * img_h * (1 + 2 * outside) - outside * img_h
    w = torch.rand(k, generator=g) * img_w / 2
    h = torch.rand(k, generator=g) * img_h / 2
    idx = torch.randint(0, n, (k,), generator=g).to(dtype)
    return torch.stack([idx, x1, y1, x1 + w, y1 + h], dim=1).to(dtype)


def tv_forward_backward(x, rois, size, scale, sampling_ratio, aligned, grad):
    x = x.detach().clone().requires_grad_()
    y = torchvision.ops.roi_align(x, rois, size, scale, sampling_ratio, aligned)
    y.backward(grad)
    return y.detach(), x.grad


def ours_forward_backward(x, rois, size, scale, sampling_ratio, aligned, grad):
    x = x.detach().clone().requires_grad_()
    y = roi_align(x, rois, size, scale, sampling_ratio, aligned)
    y.backward(grad)
    return y.detach(), x.grad


def test_hand_computed():
    # f(y, x) = 4 y + x on a 4x4 map is linear, so bilinear sampling is exact.
    x = torch.arange(16, dtype=torch.float32).view(1, 1, 4, 4).requires_grad_()
    rois = torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]])
    # Legacy alignment: samples at pixel coordinates 0.5 and 1.5.
    y = roi_align(x, rois, 2, 1.0, 1, aligned=False)
    torch.testing.assert_close(y, torch.tensor([[[[2.5, 3.5], [6.5, 7.5]]]]))
    # aligned=True shifts by -0.5: samples at 0 and 1, i.e. the pixels themselves.
    y2 = roi_align(x, rois, 2, 1.0, 1, aligned=True)
    torch.testing.assert_close(y2, torch.tensor([[[[0.0, 1.0], [4.0, 5.0]]]]))
    # The gradient of the first bin (sample at 0.5, 0.5) spreads 1/4 on its 4 neighbours.
    y[0, 0, 0, 0].backward()
    expected = torch.zeros(4, 4)
    expected[:2, :2] = 0.25
    torch.testing.assert_close(x.grad[0, 0], expected)
    # A box far outside the map pools zeros.
    far = torch.tensor([[0, 50.0, 50.0, 60.0, 60.0]])
    assert torch.equal(roi_align(x.detach(), far, 2, 1.0, 2), torch.zeros(1, 1, 2, 2))


@requires_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling_ratio", [-1, 0, 2])
def test_equals_torchvision_bitwise(dtype, aligned, sampling_ratio):
    x = torch.randn(2, 5, 13, 17, dtype=dtype)
    rois = random_rois(40, 2, 13, 17, 0.5, dtype=dtype, outside=0.2)
    grad = torch.randn(40, 5, 3, 4, dtype=dtype)
    ref = tv_forward_backward(x, rois, (3, 4), 0.5, sampling_ratio, aligned, grad)
    ours = ours_forward_backward(x, rois, (3, 4), 0.5, sampling_ratio, aligned, grad)
    # Same arithmetic in the same order: equal bit for bit, forward and backward.
    assert torch.equal(ours[0], ref[0])
    assert torch.equal(ours[1], ref[1])


def test_list_of_boxes_and_module():
    x = torch.randn(2, 3, 10, 10)
    boxes = [
        torch.tensor([[1.0, 1.0, 5.0, 6.0]]),
        torch.tensor([[0.0, 0.0, 9.0, 9.0], [2, 3, 4, 8]]),
    ]
    module = ROIAlign((2, 3), spatial_scale=1.0, sampling_ratio=2, aligned=True)
    assert "output_size=(2, 3)" in repr(module) and "aligned=True" in repr(module)
    ref = torchvision.ops.roi_align(x, boxes, (2, 3), 1.0, 2, True)
    torch.testing.assert_close(module(x, boxes), ref, rtol=0, atol=0)
    with pytest.raises(ValueError):
        roi_align(x, torch.zeros(3, 4), 2)


@requires_ops
@pytest.mark.parametrize("contiguous", [True, False])
def test_gradcheck(contiguous):
    x = torch.randn(2, 6, 9, 7, dtype=torch.float64).transpose(2, 3)[:, ::2]  # [2, 3, 7, 9]
    if contiguous:
        x = x.contiguous()
    assert x.is_contiguous() == contiguous
    x = x.detach().requires_grad_()
    rois = random_rois(6, 2, 7, 9, 1.0, outside=0.2)
    for aligned in (False, True):
        assert torch.autograd.gradcheck(
            lambda t, a=aligned: roi_align(t, rois, (2, 3), 1.0, 2, a), (x,), eps=1e-6, atol=1e-8
        )


@requires_ops
def test_opcheck():
    x = torch.randn(2, 3, 8, 9, dtype=torch.float64, requires_grad=True)
    rois = random_rois(4, 2, 8, 9, 0.5)
    torch.library.opcheck(torch.ops.featsr_d2.roi_align.default, (x, rois, 0.5, 2, 3, 2, True))
    x2 = torch.randn(2, 3, 4, 5, dtype=torch.float64, requires_grad=True)
    t = torch.randn(2, 4, 8, 9, dtype=torch.float64)
    levels = torch.tensor([0, 1, 1, 0])
    torch.library.opcheck(
        torch.ops.featsr_d2.multi_roi_align.default,
        (
            [x, x2, t, t[:, :, ::2, ::2].clone()],
            rois,
            levels,
            [0.5, 0.25, 0.5, 0.25],
            2,
            2,
            3,
            0,
            False,
        ),
    )


def test_empty_rois_and_empty_batch():
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    y = roi_align(x, torch.zeros(0, 5), (2, 2), 1.0, 2, True)
    assert y.shape == (0, 3, 2, 2)
    y.sum().backward()
    assert torch.equal(x.grad, torch.zeros_like(x))
    empty_batch = torch.randn(0, 3, 8, 8, requires_grad=True)
    y = roi_align(empty_batch, [], 2)
    assert y.shape == (0, 3, 2, 2)
    y.sum().backward()
    assert empty_batch.grad.shape == (0, 3, 8, 8)
    levels = torch.zeros(0, dtype=torch.int64)
    out = multimap_roi_align(
        [[x, x], [x, x]], torch.zeros(0, 5), 2, [[1.0, 0.5], [1.0, 0.5]], levels=levels
    )
    assert [o.shape for o in out] == [(0, 3, 2, 2), (0, 3, 2, 2)]
    with pytest.raises(ValueError, match="same levels"):
        multimap_roi_align([[x, x], x], torch.zeros(0, 5), 2, [[1.0, 0.5], 1.0], levels=levels)


@requires_ops
@pytest.mark.parametrize("aligned", [False, True])
def test_zero_area_and_outside_boxes(aligned):
    x = torch.randn(1, 4, 6, 7, dtype=torch.float64)
    rois = torch.tensor(
        [
            [0, 2.0, 2.0, 2.0, 2.0],  # zero area
            [0, 3.0, 1.0, 3.0, 5.0],  # zero width
            [0, -4.0, -3.0, 3.0, 2.0],  # partly outside (top-left)
            [0, 5.0, 4.0, 12.0, 11.0],  # partly outside (bottom-right)
            [0, 20.0, 20.0, 25.0, 25.0],  # fully outside
        ],
        dtype=torch.float64,
    )
    grad = torch.randn(5, 4, 2, 2, dtype=torch.float64)
    ref = tv_forward_backward(x, rois, 2, 1.0, 0, aligned, grad)
    ours = ours_forward_backward(x, rois, 2, 1.0, 0, aligned, grad)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)
    if aligned:  # an empty aligned RoI samples nothing and pools zeros
        assert torch.equal(ours[0][0], torch.zeros(4, 2, 2))


@requires_ops
def test_inputs_unchanged():
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64, requires_grad=True)
    rois = random_rois(5, 2, 8, 8, 1.0)
    x0, rois0 = x.detach().clone(), rois.clone()
    y = roi_align(x, rois, 2, 1.0, 2, True)
    grad = torch.randn_like(y)
    grad0 = grad.clone()
    y.backward(grad)
    assert torch.equal(x, x0) and torch.equal(rois, rois0) and torch.equal(grad, grad0)


@requires_ops
def test_invalid_indices_raise():
    x = torch.randn(2, 3, 8, 8)
    with pytest.raises(RuntimeError, match="batch index"):
        roi_align(x, torch.tensor([[2.0, 0, 0, 4, 4]]), 2)
    with pytest.raises(RuntimeError, match="levels"):
        multilevel_roi_align(
            [x, x], torch.tensor([[0.0, 0, 0, 4, 4]]), torch.tensor([2]), 2, [1.0, 0.5]
        )


def _fpn(seed=0, dtype=torch.float64, channels=4):
    g = torch.Generator().manual_seed(seed)
    sizes = [(32, 40), (16, 20), (8, 10), (4, 5)]
    return [torch.randn(2, channels, h, w, generator=g, dtype=dtype) for h, w in sizes]


@requires_ops
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_multilevel_equals_per_level_roi_align(dtype):
    feats = [f.requires_grad_() for f in _fpn(dtype=dtype)]
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    rois = random_rois(30, 2, 128, 160, 1.0, dtype=dtype, outside=0.1)
    levels = torch.randint(0, 4, (30,))
    out = multilevel_roi_align(feats, rois, levels, 3, scales, 0, True)
    grad = torch.randn_like(out)
    out.backward(grad)
    grads = [f.grad.clone() for f in feats]
    for f in feats:
        f.grad = None
    ref = torch.zeros_like(out)
    for lvl in range(4):
        idx = (levels == lvl).nonzero().flatten()
        y = torchvision.ops.roi_align(feats[lvl], rois[idx], 3, scales[lvl], 0, True)
        ref[idx] = y.detach()
        y.backward(grad[idx])
    assert torch.equal(out, ref)
    for g, f in zip(grads, feats):
        assert torch.equal(g, f.grad)


@requires_ops
def test_multimap_equals_separate_calls():
    base = _fpn(seed=1, channels=3)
    sub = _fpn(seed=2, channels=5)
    target = [f.detach() for f in _fpn(seed=3, channels=2)]  # no gradient, like FeatSR targets
    for f in base + sub:
        f.requires_grad_()
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    rois = random_rois(25, 2, 128, 160, 1.0, outside=0.1)
    levels = torch.randint(0, 4, (25,))
    outs = multimap_roi_align([base, sub, target], rois, (2, 3), [scales] * 3, 2, False, levels)
    assert [o.shape[1] for o in outs] == [3, 5, 2]
    for o, maps in zip(outs, (base, sub, target)):
        assert torch.equal(o, multilevel_roi_align(maps, rois, levels, (2, 3), scales, 2, False))
    # Gradients reach base and sub only; sub's output unused -> no gradient for sub.
    outs[0].sum().backward()
    assert all(f.grad is not None for f in base)
    assert all(f.grad is None for f in sub)
    ref = [f.detach().clone().requires_grad_() for f in base]
    multilevel_roi_align(ref, rois, levels, (2, 3), scales, 2, False).sum().backward()
    for f, r in zip(base, ref):
        assert torch.equal(f.grad, r.grad)
    # Single-level maps with different scales (FeatSR C4: base stride 16, sub stride 8).
    b4, s3 = base[2].detach(), sub[1].detach()
    one = multimap_roi_align([b4, s3], rois, 2, [1 / 16, 1 / 8], 0, True)
    assert torch.equal(one[0], roi_align(b4, rois, 2, 1 / 16, 0, True))
    assert torch.equal(one[1], roi_align(s3, rois, 2, 1 / 8, 0, True))


@requires_ops
def test_multilevel_gradcheck():
    feats = [f[:, :2, :12, :12].clone().requires_grad_() for f in _fpn()[:2]]
    rois = random_rois(6, 2, 48, 48, 1.0, outside=0.1)
    levels = torch.tensor([0, 1, 1, 0, 1, 0])
    assert torch.autograd.gradcheck(
        lambda a, b: multilevel_roi_align(
            [a, b.transpose(2, 3)], rois, levels, 2, [0.25, 0.125], 2, True
        ),
        (feats[0], feats[1].transpose(2, 3).detach().requires_grad_()),
        eps=1e-6,
        atol=1e-8,
    )


@requires_ops
def test_torch_compile_traces_the_ops():
    x = torch.randn(2, 3, 8, 9)
    rois = random_rois(4, 2, 8, 9, 1.0, dtype=torch.float32)
    fn = torch.compile(
        lambda t: roi_align(t, rois, 2, 1.0, 2, True), backend="aot_eager", fullgraph=True
    )
    assert torch.equal(fn(x), roi_align(x, rois, 2, 1.0, 2, True))


def test_without_compiled_ops_falls_back(monkeypatch):
    feats = _fpn(dtype=torch.float32)
    rois = random_rois(12, 2, 128, 160, 1.0, dtype=torch.float32)
    levels = torch.randint(0, 4, (12,))
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    compiled_out = (
        roi_align(feats[0], rois, 3, 0.25, 2, True),
        multimap_roi_align([feats, feats], rois, 3, [scales] * 2, 2, True, levels),
    )
    monkeypatch.setattr(compiled, "has_compiled_ops", lambda: False)
    assert not compiled.compiled_for(torch.device("cpu"))
    ref = torchvision.ops.roi_align(feats[0], rois, 3, 0.25, 2, True)
    assert torch.equal(roi_align(feats[0], rois, 3, 0.25, 2, True), ref)
    fallback = multimap_roi_align([feats, feats], rois, 3, [scales] * 2, 2, True, levels)
    for a, b in zip(fallback, compiled_out[1]):
        assert torch.equal(a, b)
    assert torch.equal(ref, compiled_out[0])


@requires_ops
@pytest.mark.parametrize("threads", [1, 2])
def test_result_independent_of_threads(threads):
    prev = torch.get_num_threads()
    x = torch.randn(2, 7, 10, 11)
    rois = random_rois(9, 2, 10, 11, 1.0, dtype=torch.float32)
    try:
        torch.set_num_threads(threads)
        y = roi_align(x, rois, 3, 1.0, 0, True)
    finally:
        torch.set_num_threads(prev)
    assert torch.equal(y, torchvision.ops.roi_align(x, rois, 3, 1.0, 0, True))


@requires_cuda
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_cuda_equals_cpu(dtype):
    feats = _fpn(dtype=torch.float64)
    rois = random_rois(40, 2, 128, 160, 1.0, outside=0.1)
    levels = torch.randint(0, 4, (40,))
    scales = [1 / 4, 1 / 8, 1 / 16, 1 / 32]
    tol = {torch.float16: 1e-2, torch.bfloat16: 5e-2}.get(dtype, 1e-5)

    def run(device, dt):
        fs = [f.to(device, dt).requires_grad_() for f in feats]
        single = roi_align(fs[0], rois.to(device), 3, 0.25, 0, True)
        multi = multilevel_roi_align(fs, rois.to(device), levels.to(device), 3, scales, 0, True)
        (single.float().sum() + (multi.float() * 0.5).sum()).backward()
        return [single.float().cpu(), multi.float().cpu()] + [f.grad.float().cpu() for f in fs]

    cpu = run("cpu", torch.float64 if dtype in (torch.float16, torch.bfloat16) else dtype)
    cuda = run("cuda", dtype)
    for a, b in zip(cuda, cpu):
        torch.testing.assert_close(a, b.float(), rtol=tol, atol=tol)
    # torchvision's CUDA kernel agrees too.
    x = feats[0].cuda().to(dtype)
    torch.testing.assert_close(
        roi_align(x, rois.cuda(), 3, 0.25, 2, False).float(),
        torchvision.ops.roi_align(x, rois.cuda().to(dtype), 3, 0.25, 2, False).float(),
        rtol=tol,
        atol=tol,
    )


@requires_cuda
def test_cuda_gradcheck_and_opcheck():
    x = torch.randn(2, 3, 8, 9, dtype=torch.float64, device="cuda", requires_grad=True)
    rois = random_rois(5, 2, 8, 9, 1.0).cuda()
    assert torch.autograd.gradcheck(lambda t: roi_align(t, rois, 2, 1.0, 2, True), (x,))
    torch.library.opcheck(torch.ops.featsr_d2.roi_align.default, (x, rois, 1.0, 2, 2, 2, True))
    empty = roi_align(x, rois[:0], 2, 1.0, 2, True)
    assert empty.shape == (0, 3, 2, 2)
