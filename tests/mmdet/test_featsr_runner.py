"""FeatSR's stage 2 under mmengine's own Runner, from the shipped R50-FPN config (tiny widths, a
four-image COCO-format dataset written here in place of TT100K): ``load_from`` the stage-1
checkpoint, two iterations with both optimizers and their schedules, a checkpoint that holds both
optimizers' states, and a resumed run that continues from it; ``load_from`` ImageNet-style weights
stops the run with the reason before it trains."""

import functools
import json
import os

import numpy as np
import pytest
import torch
from featsr_mmdet import LAYOUTS, load_config, stage1_state, tiny

pytestmark = pytest.mark.usefixtures("one_thread")


def _coco(root: str) -> str:
    """Four 96 x 96 images with a small and a large box, as a COCO file; its path."""
    import cv2

    rng = np.random.default_rng(0)
    images, annotations = [], []
    for k in range(4):
        name = f"{k}.png"
        cv2.imwrite(os.path.join(root, name), rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
        images.append(dict(id=k, file_name=name, height=96, width=96))
        for j, box in enumerate(([60, 58, 24, 22], [8, 12, 62, 64])):
            annotations.append(dict(id=2 * k + j, image_id=k, category_id=j + 1, bbox=box,
                                    area=box[2] * box[3], iscrowd=0))  # fmt: skip
    path = os.path.join(root, "train.json")
    with open(path, "w") as f:
        json.dump(dict(images=images, annotations=annotations,
                       categories=[dict(id=1, name="a"), dict(id=2, name="b")]), f)  # fmt: skip
    return path


def _config(tmp_path, load_from: str, max_iters: int = 2):
    cfg = tiny(load_config(LAYOUTS["R50-FPN"][1]))
    cfg.model.roi_head.bbox_head.num_classes = 45
    root = str(tmp_path)
    cfg.train_dataloader = dict(
        batch_size=2,
        num_workers=0,
        sampler=dict(type="DefaultSampler", shuffle=False),
        dataset=dict(
            type="CocoDataset",
            data_root=root,
            ann_file=_coco(root),
            data_prefix=dict(img=""),
            metainfo=dict(classes=("a", "b")),
            pipeline=[
                dict(type="LoadImageFromFile"),
                dict(type="LoadAnnotations", with_bbox=True),
                dict(type="PackDetInputs"),
            ],
        ),
    )
    for key in ("val_dataloader", "val_evaluator", "val_cfg", "test_dataloader",
                "test_evaluator", "test_cfg"):  # fmt: skip
        cfg.pop(key, None)
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=max_iters, val_interval=1000)
    cfg.param_scheduler.detector = [
        dict(type="MultiStepLR", by_epoch=False, begin=0, end=max_iters, milestones=[1])
    ]
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=2)
    cfg.default_hooks.pop("visualization", None)
    cfg.default_hooks.logger = dict(type="LoggerHook", interval=1)
    cfg.env_cfg.dist_cfg = dict(backend="gloo")
    cfg.work_dir = str(tmp_path / "work")
    cfg.load_from = load_from
    return cfg


def _stage1_file(tmp_path, keep=lambda key: True) -> str:
    path = str(tmp_path / "stage1.pth")
    state = {k: v for k, v in stage1_state("R50-FPN").items() if keep(k)}
    torch.save({"state_dict": state, "meta": {}}, path)
    return path


def test_the_runner_trains_stage2_from_stage1_and_resumes(tmp_path, monkeypatch):
    from mmengine.runner import Runner

    cfg = _config(tmp_path, _stage1_file(tmp_path))
    runner = Runner.from_cfg(cfg)
    stage1 = torch.load(cfg.load_from, weights_only=True)["state_dict"]
    runner.train()
    model = runner.model
    assert torch.equal(model.rpn_head.rpn_cls.weight, stage1["rpn_head.rpn_cls.weight"])
    small = model.roi_head.featsr.small_predictor.fc_cls.weight  # trained from the large one
    assert not torch.equal(small, stage1["roi_head.bbox_head.fc_cls.weight"])
    checkpoint = torch.load(f"{cfg.work_dir}/iter_2.pth", map_location="cpu", weights_only=False)
    optimizers = checkpoint["optimizer"]
    assert set(optimizers) == {"detector", "discriminator"}
    # The detector's schedule decayed its rate at iteration 1; D's (unscheduled) stayed.
    assert optimizers["detector"]["param_groups"][0]["lr"] == pytest.approx(0.001 * 0.1)
    assert optimizers["discriminator"]["param_groups"][0]["lr"] == pytest.approx(1e-4)
    assert optimizers["discriminator"]["state"]  # Adam's moments were saved

    # mmengine 0.10 reads its own checkpoints with torch.load's default, which PyTorch >= 2.6 makes
    # weights_only=True: it refuses the message hub's objects. The MMDetection entry points read
    # them with a restricted unpickler; this test reads the file it wrote without the restriction.
    monkeypatch.setattr(torch, "load", functools.partial(torch.load, weights_only=False))
    resumed = _config(tmp_path, f"{cfg.work_dir}/iter_2.pth", max_iters=4)
    resumed.resume = True
    runner = Runner.from_cfg(resumed)
    runner.train()
    assert runner.iter == 4
    assert os.path.isfile(f"{cfg.work_dir}/iter_4.pth")


def test_the_runner_refuses_imagenet_style_weights_before_training(tmp_path):
    from mmengine.runner import Runner

    from featsr_d2.mmdet.featsr_rcnn import FrozenWeightsMissing

    backbone_only = _stage1_file(tmp_path, keep=lambda key: key.startswith("backbone."))
    runner = Runner.from_cfg(_config(tmp_path, backbone_only))
    with pytest.raises(FrozenWeightsMissing, match="neck., rpn_head., roi_head.bbox_head."):
        runner.train()
    assert not os.path.exists(f"{runner.work_dir}/iter_1.pth")
