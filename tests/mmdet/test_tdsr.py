"""TDSR in MMDetection: the LR image of the Detectron2 mapper, a training step that changes the SR
network and not the frozen detector, the detection loss reaching the SR network through the
detector, inference, and every configs/mmdet config building."""

import glob
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from tiny_configs import MMDET_CONFIGS, write_tiny_tdsr

from featsr_d2.config import add_sr_config, get_featsr_cfg
from featsr_d2.data.lr_mapper import LRDetectionDatasetMapper
from featsr_d2.data.sr_degradation import build_sr_degradation


def _transform(**kwargs):
    from mmdet.registry import TRANSFORMS

    import featsr_d2.mmdet  # noqa: F401  (registers the transforms)

    return TRANSFORMS.build(dict(type="FeatSRMakeLRImage", **kwargs))


@pytest.mark.parametrize("degradations", [["bicubic"], ["blur", "bicubic", "noise", "jpeg"]])
def test_the_lr_image_is_the_detectron2_mappers(photo, degradations):
    """Same HR image, image id and seed: the test-time LR image of FeatSRMakeLRImage is the
    Detectron2 mapper's, bit for bit (one degradation code, one per-image seed)."""
    cfg = get_featsr_cfg()
    add_sr_config(cfg)
    cfg.merge_from_list(["INPUT.SR.DEGRADATIONS", degradations])
    mapper = SimpleNamespace(
        seed=3, image_format="BGR", scale=4, degradation=build_sr_degradation(cfg)
    )  # what LRDetectionDatasetMapper.lr_image reads of its mapper
    hr_bgr = np.ascontiguousarray(photo[:94, :, ::-1])  # 94 rows: padded to 96 before degrading
    d2 = LRDetectionDatasetMapper.lr_image(
        mapper, {"image": torch.from_numpy(hr_bgr.transpose(2, 0, 1).copy()), "image_id": 10007}
    )  # RGB (3, 24, 32)
    transform = _transform(
        scale=4, degradations=degradations, blur_sigma=list(cfg.INPUT.SR.BLUR_SIGMA),
        noise_sigma=list(cfg.INPUT.SR.NOISE_SIGMA), jpeg_quality=list(cfg.INPUT.SR.JPEG_QUALITY),
        seed=3,
    )  # fmt: skip
    results = transform({"img": hr_bgr.copy(), "img_id": "10007", "img_shape": (94, 128)})
    assert results["img"].shape == (24, 32, 3) and results["img_shape"] == (94, 128)
    assert np.array_equal(results["img"][..., ::-1].transpose(2, 0, 1), d2.numpy())
    assert np.array_equal(results["gt_hr_img"], hr_bgr)
    again = transform({"img": hr_bgr.copy(), "img_id": "10007"})["img"]
    assert np.array_equal(again, results["img"])  # seeded per image: repeatable


def test_training_draws_and_float_images_are_rounded(photo):
    hr = photo[:, :, ::-1].astype(np.float32) + 0.4  # PhotoMetricDistortion's float output
    transform = _transform(scale=2, degradations=["bicubic", "noise"], noise_sigma=[5.0, 10.0])
    np.random.seed(0)
    first = transform({"img": hr.copy()})
    second = transform({"img": hr.copy()})
    assert first["gt_hr_img"].dtype == np.uint8
    assert np.array_equal(first["gt_hr_img"], np.floor(np.clip(hr, 0, 255) + 0.5).astype(np.uint8))
    assert not np.array_equal(first["img"], second["img"])  # noise drawn per call
    with pytest.raises(ValueError, match="'bicubic' exactly once"):
        _transform(degradations=["jpeg"])


def _tiny(tmp_path, data_root, **model):
    """The tiny TDSR model, its config and a training batch of 2 images from its pipeline."""
    from mmdet.registry import DATASETS, MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.dataset import pseudo_collate

    import featsr_d2.mmdet  # noqa: F401  (registers TDSR)

    register_all_modules()
    cfg = Config.fromfile(write_tiny_tdsr(tmp_path, data_root))
    cfg.model.update(model)
    torch.manual_seed(0)
    net = MODELS.build(cfg.model)
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    np.random.seed(0)
    batch = pseudo_collate([dataset[0], dataset[1]])
    return net, cfg, batch


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def test_a_training_step_changes_the_sr_network_only(tmp_path, tiny_synth10):
    from mmengine.optim import build_optim_wrapper
    from torch.nn.modules.batchnorm import _NormBase

    model, cfg, batch = _tiny(tmp_path, tiny_synth10)
    assert type(model).__name__ == "FeatSRTaskDrivenSR" and model.beta == 0.01
    assert any(isinstance(m, _NormBase) for m in model.detector.modules())
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    det_before, sr_before = _snapshot(model.detector), _snapshot(model.sr)
    model.train()
    losses = model.train_step(batch, optim_wrapper)
    assert {"loss_rec", "loss_rpn_cls", "loss_rpn_bbox", "loss_cls", "loss_bbox"} <= set(losses)
    assert model.training and not model.detector.training
    assert all(not m.training for m in model.detector.modules())
    det_after = model.detector.state_dict()
    assert all(torch.equal(det_before[k], det_after[k]) for k in det_before)  # BN stats too
    assert all(not p.requires_grad and p.grad is None for p in model.detector.parameters())
    sr_after = model.sr.state_dict()
    assert any(not torch.equal(sr_before[k], sr_after[k]) for k in sr_before)
    lr_shapes = [tuple(x.shape) for x in batch["inputs"]]
    hr_shapes = [tuple(s.gt_hr_img.shape) for s in batch["data_samples"]]
    assert lr_shapes == [(3, 80, 80)] * 2 and hr_shapes == [(3, 320, 320)] * 2


def test_the_detection_loss_reaches_the_sr_network_through_the_detector(tmp_path, tiny_synth10):
    model, _, batch = _tiny(tmp_path, tiny_synth10, alpha=0.0, beta=1.0)
    data = model.data_preprocessor(batch, True)
    torch.manual_seed(1)  # the samplers of the RPN and the box head draw
    losses = model.loss(data["inputs"], data["data_samples"])
    assert losses["loss_rec"].item() == 0.0
    total, _ = model.parse_losses(losses)
    total.backward()
    grads = [p.grad for p in model.sr.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert all(p.grad is None for p in model.detector.parameters())

    # beta times the detector's own losses on the SR images, under its names ("acc" unscaled)
    with torch.no_grad():
        sizes = [s.img_shape for s in data["data_samples"]]
        det_batch = model._detector_batch(
            model.super_resolve(data["inputs"], sizes), data["data_samples"], training=True
        )
        torch.manual_seed(1)
        own = model.detector.loss(det_batch["inputs"], det_batch["data_samples"])
        model.beta = 0.25
        torch.manual_seed(1)
        scaled = model.loss(data["inputs"], data["data_samples"])
    assert set(own) | {"loss_rec"} == set(scaled) == set(losses)
    for name, value in own.items():
        factor = 0.25 if "loss" in name else 1.0
        assert torch.allclose(factor * _flat(value), _flat(scaled[name]), rtol=1e-5), name


def _flat(value):
    """A loss entry (a tensor, or a list of them: the RPN's per level) as one flat tensor."""
    return torch.stack([v.flatten() for v in value]) if isinstance(value, list) else value.flatten()


def test_inference_returns_the_detectors_predictions_in_image_coordinates(tmp_path, tiny_synth10):
    from mmdet.registry import DATASETS
    from mmengine.dataset import pseudo_collate

    model, cfg, _ = _tiny(tmp_path, tiny_synth10)
    dataset = DATASETS.build(cfg.test_dataloader.dataset)
    batch = pseudo_collate([dataset[0], dataset[1]])
    model.eval()
    with torch.no_grad():
        outputs = model.val_step(batch)
        sr = model.super_resolve(batch["inputs"], [s.img_shape for s in batch["data_samples"]])
    assert [tuple(x.shape) for x in sr] == [(3, 320, 320)] * 2
    for sample in outputs:
        pred = sample.pred_instances
        assert len(pred.bboxes) == len(pred.scores) == len(pred.labels) > 0
        h, w = sample.ori_shape  # 128 px: the predictions are rescaled to the original image
        assert (h, w) == (128, 128)
        assert float(pred.bboxes[:, 2].max()) <= w and float(pred.bboxes[:, 3].max()) <= h
    with pytest.raises(KeyError, match="FeatSRMakeLRImage and FeatSRPackLRDetInputs"):
        model.loss(batch["inputs"][:1], [_without_hr(batch)])


def _without_hr(batch):
    sample = batch["data_samples"][0].clone()
    del sample.gt_hr_img
    return sample


DEMO_DETECTOR = "faster-rcnn_mnv2_fpn_tt100k_synth10.py"


def _configs():
    return sorted(glob.glob(os.path.join(MMDET_CONFIGS, "**", "*.py"), recursive=True))


def test_every_mmdet_config_builds(tiny_tt100k, tiny_synth10):
    """Every config loads; its model (TDSR: full D-DBPN and detector), pipelines and evaluators
    build; its TT100K datasets load the tiny data; the TDSR configs keep the paper's settings."""
    from mmdet.registry import DATASETS, METRICS, MODELS, TRANSFORMS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    import featsr_d2.mmdet  # noqa: F401  (registers everything)

    register_all_modules()
    configs = _configs()
    names = {os.path.relpath(p, MMDET_CONFIGS) for p in configs}
    assert {
        "_base_/datasets/tt100k.py", "_base_/datasets/tt100k_synth10.py",
        DEMO_DETECTOR, "tdsr/tdsr_dbpn_x4_voc.py",
        "tdsr/srft_dbpn_x4_voc.py", "tdsr/srft_plus_dbpn_x4_voc.py", "tdsr/tdsr_dbpn_x4_synth10.py",
        "tdsr/srft_dbpn_x4_synth10.py", "tdsr/srft_plus_dbpn_x4_synth10.py",
    } <= names  # fmt: skip
    for path in configs:
        cfg = Config.fromfile(path)
        for loader in ("train_dataloader", "test_dataloader"):
            if loader not in cfg:  # a base of another kind (model, schedule)
                continue
            dataset = cfg[loader].dataset
            while "dataset" in dataset or "datasets" in dataset:  # VOC's Repeat/ConcatDataset
                dataset = dataset.get("dataset") or dataset.datasets[0]
            for transform in dataset.pipeline:
                TRANSFORMS.build(transform)
            if dataset.type == "FeatSRTT100KDataset":
                root = tiny_synth10 if dataset.class_set == "all" else tiny_tt100k[2]
                assert len(DATASETS.build({**dataset, "data_root": root})) > 0
        if "test_evaluator" in cfg:
            METRICS.build(cfg.test_evaluator)
        if "model" not in cfg:
            continue
        model = MODELS.build(cfg.model)
        if cfg.model.type == "FeatSRTaskDrivenSR":
            name = os.path.basename(path)
            assert type(model.sr).__name__ == "DBPN" and model.sr.scale == 4
            assert sum(p.numel() for p in model.sr.parameters()) == 10_426_358  # D-DBPN x4
            assert not any(p.requires_grad for p in model.detector.parameters())
            assert model.beta == (0.01 if name.startswith("tdsr_") else 0.0)
            assert cfg.optim_wrapper.optimizer.type == "Adam"
            assert cfg.optim_wrapper.optimizer.lr == 1e-4
            assert cfg.train_dataloader.batch_size == 6
            assert dataset.pipeline[-2].type == "FeatSRMakeLRImage"
            if name.endswith("_synth10.py"):  # through the demo detector, as Detectron2's
                demo = Config.fromfile(os.path.join(MMDET_CONFIGS, DEMO_DETECTOR))
                # (read again: building mmdet's two-stage detector updates its roi_head config)
                assert Config.fromfile(path).model.detector == demo.model
                final = f"{demo.work_dir}/iter_{demo.train_cfg.max_iters}.pth"
                assert cfg.model.detector_checkpoint == final
                assert cfg.work_dir == f"work_dirs/{name[:-3]}"  # not the detector's


def test_the_lr_images_reach_the_sr_network_unnormalized(tmp_path, tiny_synth10):
    with pytest.raises(TypeError, match="must not normalize or stack the LR images"):
        _tiny(tmp_path, tiny_synth10, data_preprocessor=dict(type="DetDataPreprocessor"))
    with pytest.raises(ValueError, match="not both 0"):
        _tiny(tmp_path, tiny_synth10, alpha=0.0, beta=0.0)
