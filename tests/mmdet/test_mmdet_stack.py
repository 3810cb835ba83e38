"""The MMDetection stack: installed at the pinned versions, with compiled ops that agree with
torchvision's; and a missing stack fails a test with the set-up's reason."""

import sys
from importlib.metadata import version

import pytest
import torch
from mmdet_stack import pinned_versions, require_mmdet_stack
from torchvision.ops import roi_align as tv_roi_align


def test_pins_name_the_stack():
    pins = pinned_versions()
    assert {"mmcv", "mmengine", "mmdet"} <= set(pins)


def test_versions_equal_the_pins():
    import mmcv
    import mmdet
    import mmengine

    for name, pinned in pinned_versions().items():
        assert version(name) == pinned, name
    pins = pinned_versions()
    assert (mmcv.__version__, mmengine.__version__, mmdet.__version__) == (
        pins["mmcv"],
        pins["mmengine"],
        pins["mmdet"],
    )


def _rois(generator: torch.Generator) -> torch.Tensor:
    """Boxes in image coordinates (twice the feature map's), some past its border, one a point."""
    x1y1 = torch.rand(12, 2, generator=generator) * 30 - 2
    wh = torch.rand(12, 2, generator=generator) * 14
    wh[0] = 0.0  # a point
    boxes = torch.cat([x1y1, x1y1 + wh], dim=1)
    batch = torch.tensor([0.0] * 6 + [1.0] * 6).unsqueeze(1)
    return torch.cat([batch, boxes], dim=1)


@pytest.mark.parametrize("sampling_ratio", [2, 0])
def test_mmcv_roi_align_equals_torchvision_on_cpu(one_thread, sampling_ratio):
    from mmcv.ops import roi_align

    generator = torch.Generator().manual_seed(0)
    feat = torch.rand(2, 3, 12, 16, generator=generator)
    rois = _rois(generator)
    grad_out = torch.rand(12, 3, 5, 4, generator=generator)
    outputs, grads = [], []
    for op in ("mmcv", "torchvision"):
        x = feat.clone().requires_grad_()
        if op == "mmcv":
            out = roi_align(x, rois, (5, 4), 0.5, sampling_ratio, "avg", True)
        else:
            out = tv_roi_align(x, rois, (5, 4), 0.5, sampling_ratio, aligned=True)
        out.backward(grad_out)
        outputs.append(out.detach())
        grads.append(x.grad)
    assert outputs[0].abs().sum() > 0
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=1e-6)
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-6)


def test_a_missing_stack_fails_with_the_set_up_reason(tmp_path, monkeypatch):
    status = tmp_path / ".featsr_mmdet_status"
    status.write_text(
        "failed: could not download the mmcv==2.1.0 sdist from the package index\n"
        "log: /somewhere/.featsr_mmdet_setup.log\nretry: make setup-mmdet\n"
    )
    monkeypatch.setitem(sys.modules, "mmdet", None)  # `import mmdet` now raises ImportError
    with pytest.raises(pytest.fail.Exception) as failure:
        require_mmdet_stack(str(status))
    message = str(failure.value)
    assert "import of mmdet halted" in message
    assert "could not download the mmcv==2.1.0 sdist" in message
    assert "/somewhere/.featsr_mmdet_setup.log" in message
    assert "Retry: make setup-mmdet" in message


def test_a_missing_status_file_says_the_set_up_never_ran(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "mmcv.ops", None)
    with pytest.raises(pytest.fail.Exception) as failure:
        require_mmdet_stack(str(tmp_path / "absent"))
    assert "tools/setup_mmdet.sh never ran" in str(failure.value)
    assert "mmcv.ops" in str(failure.value)


def test_an_installed_stack_passes_the_check(tmp_path):
    (tmp_path / "status").write_text("failed: stale\n")
    assert require_mmdet_stack(str(tmp_path / "status")) is None
