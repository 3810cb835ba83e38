"""FeatSR's two optimizers in mmengine: the constructor splits the parameters (D's Adam, the rest
SGD), only stage 2 with a trained D gets D's optimizer, D steps with the detector's optimizer
(gradient accumulation included), the distributed wrapper trains both, and what would step D
twice or scale its gradients is refused."""

import socket

import pytest
import torch
from featsr_mmdet import data, featsr_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _wrappers(model, cfg, **detector):
    from mmengine.optim import build_optim_wrapper

    optim = cfg.optim_wrapper.copy()
    optim["detector"] = {**optim["detector"], **detector}
    return build_optim_wrapper(model, optim)


def _params(optimizer) -> set[int]:
    return {id(p) for group in optimizer.param_groups for p in group["params"]}


def test_stage2_gets_sgd_without_d_and_adam_for_d():
    model, cfg = featsr_model("R50-FPN", 2)
    wrappers = _wrappers(model, cfg)
    assert sorted(wrappers.keys()) == ["detector", "discriminator"]
    sgd, adam = wrappers["detector"].optimizer, wrappers["discriminator"].optimizer
    assert type(sgd).__name__ == "SGD" and type(adam).__name__ == "Adam"
    assert adam.param_groups[0]["betas"] == (0.5, 0.999) and adam.param_groups[0]["lr"] == 1e-4
    d = {id(p) for p in model.roi_head.featsr.discriminator.parameters()}
    assert _params(adam) == d and not (_params(sgd) & d)
    g = {id(p) for p in model.roi_head.featsr.generator.parameters()}
    assert g <= _params(sgd)


@pytest.mark.parametrize("stage, supervision", [(3, "extractor"), (2, "detection_only")])
def test_a_phase_without_a_trained_d_gets_no_d_optimizer(stage, supervision):
    model, cfg = featsr_model("R50-FPN", stage, supervision=supervision)
    wrappers = _wrappers(model, cfg)
    assert list(wrappers.keys()) == ["detector"]
    model.train_step(data(), wrappers)  # trains with the detector's optimizer alone


def test_d_steps_when_the_detector_steps_with_gradient_accumulation():
    model, cfg = featsr_model("R50-FPN", 2)
    wrappers = _wrappers(model, cfg, accumulative_counts=2)
    d = model.roi_head.featsr.discriminator
    g = model.roi_head.featsr.generator
    start_d = [p.clone() for p in d.parameters()]
    start_g = [p.clone() for p in g.parameters()]
    model.train_step(data(), wrappers)
    assert all(torch.equal(a, b) for a, b in zip(start_d, d.parameters()))  # accumulating
    assert all(torch.equal(a, b) for a, b in zip(start_g, g.parameters()))
    assert all(p.grad is not None for p in d.parameters())
    model.train_step(data(), wrappers)
    assert not all(torch.equal(a, b) for a, b in zip(start_d, d.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(start_g, g.parameters()))
    assert all(p.grad is None or not p.grad.any() for p in d.parameters())  # zeroed


def test_what_would_step_d_twice_or_scale_its_gradients_is_refused():
    from mmengine.optim import OptimWrapper, build_optim_wrapper

    model, cfg = featsr_model("R50-FPN", 2)
    everything = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.01))
    with pytest.raises(ValueError, match="FeatSROptimWrapperConstructor"):
        model.train_step(data(), everything)
    optim = cfg.optim_wrapper.copy()
    optim["detector"] = {**optim["detector"], "type": "AmpOptimWrapper"}
    with pytest.raises(ValueError, match="AmpOptimWrapper"):
        build_optim_wrapper(model, optim)
    without_d = {k: v for k, v in cfg.optim_wrapper.items() if k != "discriminator"}
    with pytest.raises(ValueError, match="discriminator=dict"):
        build_optim_wrapper(model, without_d)
    with pytest.raises(ValueError, match="paramwise_cfg goes inside detector"):
        build_optim_wrapper(model, {**cfg.optim_wrapper, "paramwise_cfg": dict(norm_decay_mult=0)})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_distributed_wrapper_trains_both_optimizers():
    """FeatSRDistributedDataParallel (one gloo process): mmengine's own wrapper would call the
    OptimWrapperDict's update_params, which mmengine leaves unimplemented."""
    import torch.distributed as dist
    from mmengine.model import MMDistributedDataParallel

    from featsr_d2.mmdet.optim_wrapper import FeatSRDistributedDataParallel

    model, cfg = featsr_model("R50-FPN", 2)
    wrappers = _wrappers(model, cfg)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0,
                            world_size=1)  # fmt: skip
    try:
        with pytest.raises(NotImplementedError):
            MMDistributedDataParallel(module=model).train_step(data(), wrappers)
        model.zero_grad(set_to_none=True)
        wrapped = FeatSRDistributedDataParallel(module=model)
        d = model.roi_head.featsr.discriminator
        start = [p.clone() for p in d.parameters()]
        log = wrapped.train_step(data(), wrappers)
        assert "loss_discriminator" in log
        assert not all(torch.equal(a, b) for a, b in zip(start, d.parameters()))
    finally:
        dist.destroy_process_group()
