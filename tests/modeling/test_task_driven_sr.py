"""TaskDrivenSR (TDSR): the frozen detector stays bit-identical while the SR network trains;
beta = 0 is exactly the reconstruction gradient and eq. 3 is linear in (alpha, beta); shapes
through the chain at 4x and 8x; LR inputs; the trainer's optimizer, dispatch and resume; every
TDSR config."""

import glob
import inspect
import os
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from common import TDSR_SYNTH as SYNTH
from common import tiny_tdsr_cfg as tiny_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage
from torch.nn.modules.batchnorm import _NormBase
from train_hooks import StopAfter

from featsr_d2.config import add_tdsr_config, get_detector_cfg, get_featsr_cfg
from featsr_d2.core.degradations import lr_size, make_lr_image
from featsr_d2.data.lr_mapper import LRDetectionDatasetMapper, lr_seed
from featsr_d2.data.sr_degradation import build_sr_degradation
from featsr_d2.engine import FeatSRTrainer, TDSRTrainer, trainer_class
from featsr_d2.utils.image import detector_to_rgb, detector_to_rgb_tensor, rgb_tensor_to_detector

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TDSR_CONFIGS = sorted(
    glob.glob(os.path.join(REPO, "configs", "tdsr", "**", "*.yaml"), recursive=True)
)

pytestmark = pytest.mark.usefixtures("one_thread_in_repo")


def lr_batch(cfg, tiny_tt100k, n=2, is_train=True):
    """Mapped inputs of the first n training images that hold objects."""
    mapper = LRDetectionDatasetMapper(cfg, is_train, detector_cfg=get_detector_cfg(cfg))
    dicts = [d for d in DatasetCatalog.get(tiny_tt100k[0]) if d["annotations"]][:n]
    np.random.seed(0)
    return [mapper(dict(d)) for d in dicts]


def snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_every_tdsr_config_loads_and_dispatches():
    names = {os.path.relpath(p, os.path.join(REPO, "configs", "tdsr")) for p in TDSR_CONFIGS}
    assert {"Base-TDSR.yaml", "tdsr_dbpn_x4_voc.yaml", "srft_dbpn_x4_voc.yaml",
            "srft_plus_dbpn_x4_voc.yaml", "tdsr_dbpn_x8_voc.yaml", "tdsr_dbpn_x4_synth.yaml",
            "cajnn_jpeg_x4_synth.yaml", "quick_schedules/tdsr_dbpn_slim_x4_synth_cpu.yaml",
            } <= names  # fmt: skip
    for path in TDSR_CONFIGS:
        cfg = get_featsr_cfg(path)
        assert cfg.MODEL.META_ARCHITECTURE == "TaskDrivenSR" and trainer_class(cfg) is TDSRTrainer
        assert cfg.SOLVER.BASE_LR == 1e-4 and cfg.SOLVER.IMS_PER_BATCH == 6  # the paper's
        if os.path.basename(path).startswith("Base-"):
            continue
        det = get_detector_cfg(cfg)  # the detector's config exists and is a detector's
        assert det.MODEL.META_ARCHITECTURE == "GeneralizedRCNN"
        assert det.INPUT.FORMAT in ("RGB", "BGR")
        build_sr_degradation(cfg)
        if cfg.SOLVER.STEPS and cfg.MODEL.SR.RESIDUAL and not cfg.MODEL.SR.WEIGHTS:
            # the whole schedule from the residual start, divided at 2/3 as the paper's 300k
            assert cfg.SOLVER.STEPS[0] == cfg.SOLVER.MAX_ITER * 2 // 3
        elif cfg.SOLVER.STEPS:  # divided by 10 at 2/3 of the paper's 300k (100k SR-FT + 200k)
            assert cfg.SOLVER.STEPS[0] == cfg.SOLVER.MAX_ITER // 2
    detector_config = os.path.join(REPO, "configs", "faster_rcnn_MNV2_FPN_synth.yaml")
    assert trainer_class(get_featsr_cfg(detector_config)) is FeatSRTrainer


def test_every_tdsr_key_has_a_comment():
    source, first = inspect.getsourcelines(add_tdsr_config)  # in featsr_d2/config.py
    lines = [line.rstrip("\n") for line in source]
    keys = [i for i, line in enumerate(lines) if re.match(r"\s*_C(\.\w+)+ = ", line)]
    assert len(keys) == 1 + len(get_featsr_cfg().MODEL.TDSR)
    for i in keys:
        assert lines[i - 1].strip().startswith("#"), f"config.py:{first + i} has no comment"


def test_training_steps_change_sr_only(tiny_tt100k, tmp_path):
    """Two TDSRTrainer steps (beta 0.01, BatchNorm detector): every detector tensor (parameters and
    BN statistics) is bit-identical, SR parameters changed, the optimizer holds SR parameters only,
    and then resuming continues after the last checkpoint."""
    cfg = tiny_cfg(tiny_tt100k, tmp_path, "DATASETS.TEST", ())
    trainer = TDSRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    model = trainer.model
    det_before, sr_before = snapshot(model.detector), snapshot(model.sr)
    assert any(isinstance(m, _NormBase) for m in model.detector.modules())
    trainer.train()

    assert model.training and model.detector.training  # losses need the detector's training mode
    assert all(not m.training for m in model.detector.modules() if isinstance(m, _NormBase))
    det_after = model.detector.state_dict()
    assert all(torch.equal(det_before[k], det_after[k]) for k in det_before)
    assert all(not p.requires_grad and p.grad is None for p in model.detector.parameters())
    assert any(not torch.equal(sr_before[k], v) for k, v in model.sr.state_dict().items())
    held = {id(p) for g in trainer.optimizer.param_groups for p in g["params"]}
    assert held == {id(p) for p in model.sr.parameters()}
    assert isinstance(trainer.optimizer, torch.optim.Adam)
    storage = trainer.storage.latest()
    assert {"loss_rec", "loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"} <= set(storage)

    saved = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert saved["iteration"] == 1
    resumed = TDSRTrainer(
        tiny_cfg(tiny_tt100k, tmp_path, "DATASETS.TEST", (), "SOLVER.MAX_ITER", 3)
    )
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    state = resumed.model.state_dict()
    assert all(torch.equal(saved["model"][k], state[k]) for k in saved["model"])
    moments = resumed.optimizer.state_dict()["state"]
    for k, v in saved["trainer"]["_trainer"]["optimizer"]["state"].items():  # Adam's moments
        assert torch.equal(moments[k]["exp_avg"], v["exp_avg"])
    resumed.train()
    assert resumed.iter == 3  # iteration 2 ran, after the restored ones
    det_final = resumed.model.detector.state_dict()
    assert all(torch.equal(det_before[k], det_final[k]) for k in det_before)


def _sr_grads(model, batch, seed=0):
    model.zero_grad(set_to_none=True)
    torch.manual_seed(seed)  # the detector's anchor and proposal sampling
    with EventStorage():
        losses = model(batch)
    sum(losses.values()).backward()
    return losses, [p.grad.clone() for p in model.sr.parameters()]


def test_beta_zero_is_exactly_the_reconstruction_gradient(tiny_tt100k, tmp_path):
    cfg = tiny_cfg(tiny_tt100k, tmp_path, "MODEL.TDSR.BETA", 0.0, "MODEL.TDSR.ALPHA", 1.0)
    model = build_model(cfg).train()
    batch = lr_batch(cfg, tiny_tt100k)

    def no_detector(*args, **kwargs):
        raise AssertionError("beta = 0 must not run the detector")

    model.detector.forward = no_detector
    losses, grads = _sr_grads(model, batch)
    assert set(losses) == {"loss_rec"}

    model.zero_grad(set_to_none=True)
    sr = torch.stack(model.super_resolve([x["lr_image"] for x in batch]))
    hr = torch.stack([x["image"].float() / 255.0 for x in batch])  # the detector takes RGB
    F.mse_loss(sr[..., : hr.shape[-2], : hr.shape[-1]], hr).backward()
    for g, p in zip(grads, model.sr.parameters()):
        assert torch.equal(g, p.grad)


def test_loss_is_linear_in_alpha_and_beta(tiny_tt100k, tmp_path):
    """Eq. 4: the SR gradient of alpha L_rec + beta L_task is the sum of the two weighted ones, the
    detection term reaches the SR parameters, and no detector parameter gets a gradient."""
    cfg = tiny_cfg(tiny_tt100k, tmp_path)
    model = build_model(cfg).train()
    batch = lr_batch(cfg, tiny_tt100k)
    model.alpha, model.beta = 1.0, 0.5
    both_losses, both = _sr_grads(model, batch)
    model.alpha, model.beta = 1.0, 0.0
    rec_losses, rec = _sr_grads(model, batch)
    model.alpha, model.beta = 0.0, 0.5
    task_losses, task = _sr_grads(model, batch)
    assert torch.equal(both_losses["loss_rec"], rec_losses["loss_rec"])
    assert task_losses["loss_rec"] == 0 and len(task_losses) == 5
    for a, b, c in zip(both, rec, task):
        torch.testing.assert_close(a, b + c, rtol=1e-4, atol=1e-7)
    assert any(c.abs().sum() > 0 for c in task)
    assert all(p.grad is None for p in model.detector.parameters())


@pytest.mark.parametrize("scale,sr", [(4, "DBPN"), (8, "DBPN"), (4, "Bicubic")])
def test_shapes_through_the_chain(scale, sr, tiny_tt100k, tmp_path):
    """HR 128 x 120 (120 is not a multiple of 8): LR ceil(H/s) x ceil(W/s), SR output cropped to
    the HR size, detections and the SR image at the right sizes, the same LR however made; an
    input without "lr_image" is refused."""
    cfg = tiny_cfg(tiny_tt100k, tmp_path, "MODEL.SR.SCALE", scale, "MODEL.SR.NAME", sr,
                   "MODEL.TDSR.RETURN_SR_IMAGE", True)  # fmt: skip
    model = build_model(cfg).eval()
    d = next(x for x in DatasetCatalog.get(tiny_tt100k[1]) if x["annotations"])
    mapped = DatasetMapper(get_detector_cfg(cfg), is_train=False)(dict(d))
    mapped["image"] = mapped["image"][:, :, :120]  # a width that is no multiple of the scale
    x = dict(mapped)
    mapper = LRDetectionDatasetMapper(cfg, False, detector_cfg=get_detector_cfg(cfg))
    x["lr_image"] = mapper.lr_image(mapped)  # made by the TDSR mapper from "image"
    assert tuple(x["lr_image"].shape) == (3, *lr_size(128, 120, scale))
    assert x["lr_image"].dtype == torch.uint8
    # The same LR made from the public functions, with the test-time seed of the image's id.
    lr = make_lr_image(
        detector_to_rgb(mapped["image"], model.input_format),
        scale,
        build_sr_degradation(cfg),
        np.random.default_rng(lr_seed(cfg.INPUT.SR.SEED, mapped)),
    )
    made = dict(mapped, lr_image=torch.as_tensor(np.ascontiguousarray(lr.transpose(2, 0, 1))))
    with pytest.raises(KeyError, match="lr_image"):  # the mapper makes the inputs, not the model
        model([mapped])
    with torch.no_grad():
        (out_given,) = model([x])
        (out_made,) = model([made])
        sr_images = model.super_resolve([x["lr_image"]])
    assert tuple(sr_images[0].shape) == (
        3,
        lr_size(128, 120, scale)[0] * scale,
        120 + (-120) % scale,
    )
    assert tuple(out_given["sr_image"].shape) == (3, 128, 120)
    assert 0 <= out_given["sr_image"].min() and out_given["sr_image"].max() <= 1
    assert out_given["instances"].image_size == (d["height"], d["width"])
    boxes_given = out_given["instances"].pred_boxes.tensor
    assert torch.equal(boxes_given, out_made["instances"].pred_boxes.tensor)


def test_lr_mapper_is_seeded_per_image_at_test_time(tiny_tt100k, tmp_path):
    cfg = tiny_cfg(tiny_tt100k, tmp_path, "INPUT.SR.DEGRADATIONS", ["bicubic", "noise", "jpeg"],
                   "INPUT.SR.JPEG_QUALITY", [10, 90])  # fmt: skip
    mapper = LRDetectionDatasetMapper(cfg, False, detector_cfg=get_detector_cfg(cfg))
    dicts = DatasetCatalog.get(tiny_tt100k[1])[:2]
    a = [mapper(dict(d))["lr_image"] for d in dicts]
    b = [mapper(dict(d))["lr_image"] for d in dicts]
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    hr = mapper(dict(dicts[0]))["image"].permute(1, 2, 0).numpy()
    plain = make_lr_image(
        np.ascontiguousarray(hr),
        4,
        build_sr_degradation(get_featsr_cfg(SYNTH)),
        np.random.default_rng(0),
    )
    assert tuple(a[0].shape) == (3, *plain.shape[:2]) and not np.array_equal(
        a[0].permute(1, 2, 0).numpy(), plain
    )  # noise and JPEG were applied
    train = LRDetectionDatasetMapper(cfg, True, detector_cfg=get_detector_cfg(cfg))
    out = train(dict(next(d for d in DatasetCatalog.get(tiny_tt100k[0]) if d["annotations"])))
    assert tuple(out["image"].shape[-2:]) == (64, 64)  # INPUT.SR.PATCH_SIZE crop after resizing
    assert tuple(out["lr_image"].shape) == (3, 16, 16)


def test_bgr_detector_gets_bgr_and_the_target_is_rgb(tiny_tt100k, tmp_path):
    cfg = tiny_cfg(tiny_tt100k, tmp_path, detector_opts=["INPUT.FORMAT", "BGR"])
    model = build_model(cfg)
    assert model.input_format == "BGR"  # the conversions of featsr_d2.utils.image use it
    rgb = torch.rand(3, 8, 8)
    bgr = rgb_tensor_to_detector(rgb, model.input_format)
    assert torch.allclose(bgr[0], rgb[2] * 255) and torch.allclose(bgr[2], rgb[0] * 255)
    assert torch.allclose(detector_to_rgb_tensor(bgr, model.input_format), rgb)
    batch = lr_batch(cfg, tiny_tt100k, n=1, is_train=False)
    hr = batch[0]["image"].flip(0).permute(1, 2, 0).numpy()  # the mapper's BGR back to RGB
    degradation = build_sr_degradation(cfg)
    lr = make_lr_image(np.ascontiguousarray(hr), 4, degradation, np.random.default_rng(0))
    assert np.array_equal(batch[0]["lr_image"].permute(1, 2, 0).numpy(), lr)


def test_resume_is_exact(tiny_tt100k, tmp_path):
    """4 iterations straight, and 2 + a crash + 2 more in a fresh trainer (other global
    generators), give bit-identical SR weights and Adam states: the data stream, the degradations
    and every generator come back from the checkpoint."""

    def run(folder, *, resume, stop_at=None, seed=0):
        torch.manual_seed(seed)
        np.random.seed(seed)
        cfg = tiny_cfg(
            tiny_tt100k, tmp_path / folder, "DATASETS.TEST", (), "SOLVER.MAX_ITER", 4,
            "SOLVER.CHECKPOINT_PERIOD", 2, "SEED", -1,
            "INPUT.SR.DEGRADATIONS", ["blur", "bicubic", "noise"],  # random draws per sample
            "INPUT.SR.BLUR_SIGMA", [0.5, 2.0], "INPUT.SR.NOISE_SIGMA", [0.0, 10.0],
        )  # fmt: skip
        trainer = TDSRTrainer(cfg)
        if stop_at is not None:
            trainer.register_hooks([StopAfter(stop_at)])
        trainer.resume_or_load(resume=resume)
        if stop_at is None:
            trainer.train()
        else:
            with pytest.raises(KeyboardInterrupt):
                trainer.train()
        return trainer

    straight = run("straight", resume=False)
    run("resumed", resume=False, stop_at=1)
    resumed = run("resumed", resume=True, seed=7)
    assert resumed.start_iter == 2 and resumed.iter == straight.iter == 4
    for (name, p), q in zip(straight.model.sr.named_parameters(), resumed.model.sr.parameters()):
        assert torch.equal(p, q), name
    a, b = straight.optimizer.state_dict()["state"], resumed.optimizer.state_dict()["state"]
    assert a and a.keys() == b.keys()
    for k in a:
        assert all(torch.equal(a[k][m], b[k][m]) for m in ("exp_avg", "exp_avg_sq")), k


def test_retinanet_detector(tiny_tt100k, tmp_path):
    """A one-stage detector behind the SR network: RetinaNet's own losses reach the SR
    parameters only, and inference returns its detections at the HR size."""
    retina = [
        "MODEL.META_ARCHITECTURE", "RetinaNet", "MODEL.RETINANET.NUM_CLASSES", "45",
        "MODEL.RETINANET.IN_FEATURES", '["p3", "p4", "p5", "p6"]',
    ]  # fmt: skip
    cfg = tiny_cfg(tiny_tt100k, tmp_path, detector_opts=retina)
    model = build_model(cfg).train()
    assert type(model.detector).__name__ == "RetinaNet"
    torch.manual_seed(0)
    with EventStorage():
        losses = model(lr_batch(cfg, tiny_tt100k))
    assert {"loss_rec", "loss_cls", "loss_box_reg"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.detector.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.sr.parameters())
    model.eval()
    batch = lr_batch(cfg, tiny_tt100k, n=1, is_train=False)
    with torch.no_grad():
        (out,) = model(batch)
    assert out["instances"].image_size == (batch[0]["height"], batch[0]["width"])


def test_an_empty_image_is_refused_at_the_boundary_naming_it(tiny_tt100k, tmp_path):
    """Issue 22.9: TaskDrivenSR and its SR stage name an empty image instead of failing inside a
    convolution ("Kernel size can't be greater than actual input size")."""
    model = build_model(tiny_cfg(tiny_tt100k, tmp_path)).eval()
    empty = torch.zeros(3, 0, 0, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"LR image 1 is empty \(0x0 pixels"):
        model.super_resolve([torch.zeros(3, 8, 8, dtype=torch.uint8), empty])
    x = {"image": torch.zeros(3, 32, 32), "lr_image": empty, "file_name": "e.jpg"}
    with pytest.raises(ValueError, match=r"the LR image of image e\.jpg is empty"), torch.no_grad():
        model([x])
    x = {"image": torch.zeros(3, 0, 32), "lr_image": torch.zeros(3, 8, 8), "image_id": 7}
    with pytest.raises(ValueError, match=r"the HR image of image id 7 is empty \(0x32"):
        model.train()([x])
