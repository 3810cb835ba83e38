"""SR training: every SR config loads and trains a step; a few iterations lower the loss; a run
stopped part-way and resumed ends exactly where an uninterrupted one does; the tools run."""

import glob
import json
import math
import os
import re
import runpy

import cv2
import numpy as np
import pytest
import torch
from detectron2.engine import default_argument_parser
from detectron2.utils.events import EventStorage
from train_hooks import StopAfter

from featsr_d2.config import get_sr_cfg
from featsr_d2.data.sr_dataset import SRPatchSampler, read_rgb
from featsr_d2.engine.sr_trainer import (
    CosineRestartsParamScheduler,
    SRTrainer,
    build_sr_loss,
    build_sr_lr_scheduler,
)
from featsr_d2.modeling.sr import SR_NETWORK_REGISTRY, build_sr_network

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SR_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "sr", "**", "*.yaml"), recursive=True))
SKIMAGE_DATA = os.path.join(os.path.dirname(__import__("skimage").__file__), "data")


pytestmark = pytest.mark.usefixtures("one_thread")


# A tiny D-DBPN and a tiny CAJNN, for the iterations that must be fast.
TINY_DBPN = ["MODEL.SR.NAME", "DBPN", "MODEL.SR.DBPN.FEAT", 16, "MODEL.SR.DBPN.BASE_FILTER", 8,
             "MODEL.SR.DBPN.NUM_STAGES", 3]  # fmt: skip
TINY_CAJNN = ["MODEL.SR.NAME", "CAJNN", "MODEL.SR.CAJNN.NUM_FEAT", 16, "MODEL.SR.CAJNN.NUM_BLOCKS",
              1, "MODEL.SR.CAJNN.GROWTH", 8]  # fmt: skip


@pytest.fixture(scope="module")
def hr_folder(tmp_path_factory):
    """Three real photographs (crops of scikit-image's), as a folder of HR images."""
    folder = tmp_path_factory.mktemp("hr")
    for name, box in (("astronaut.png", (0, 96, 0, 128)), ("coffee.png", (50, 146, 100, 228)),
                      ("rocket.jpg", (100, 196, 200, 328))):  # fmt: skip
        y0, y1, x0, x1 = box
        img = read_rgb(os.path.join(SKIMAGE_DATA, name))[y0:y1, x0:x1]
        cv2.imwrite(str(folder / name.replace(".jpg", ".png")), img[..., ::-1])
    return str(folder)


def tiny_cfg(hr_folder, output_dir, *opts, config=None):
    cfg = get_sr_cfg(config or os.path.join(REPO, "configs", "sr", "Base-SR.yaml"))
    cfg.merge_from_list([
        "MODEL.DEVICE", "cpu", "DATASETS.SR.TRAIN", [hr_folder], "DATASETS.SR.TEST", [hr_folder],
        "INPUT.SR.PATCH_SIZE", 32, "SOLVER.IMS_PER_BATCH", 2, "SOLVER.MAX_ITER", 6,
        "SOLVER.CHECKPOINT_PERIOD", 3, "TEST.SR.SAMPLE_PERIOD", 0, "TEST.SR.NUM_SAMPLES", 2,
        "TEST.SR.SAMPLE_CROP", 48, "OUTPUT_DIR", str(output_dir), *opts,
    ])  # fmt: skip
    return cfg


def test_sr_configs_found_and_every_one_loads():
    names = {os.path.relpath(p, os.path.join(REPO, "configs", "sr")) for p in SR_CONFIGS}
    assert {"Base-SR.yaml", "dbpn_x4.yaml", "dbpn_x8.yaml", "cajnn_x4_jpeg.yaml",
            "realesrgan_x4plus.yaml"} <= names  # fmt: skip
    for path in SR_CONFIGS:
        cfg = get_sr_cfg(path)  # unknown keys raise
        assert cfg.MODEL.SR.NAME in SR_NETWORK_REGISTRY
        if not os.path.basename(path).startswith("Base-"):
            with open(path) as f:
                base = re.search(r'^_BASE_: "(.+)"', f.read(), re.M)
            assert base, f"{path} has no _BASE_"
            assert cfg != get_sr_cfg(os.path.join(os.path.dirname(path), base.group(1))), path


@pytest.mark.parametrize(
    "path", [p for p in SR_CONFIGS if not os.path.basename(p).startswith("Base-")],
    ids=lambda p: os.path.relpath(p, REPO),
)  # fmt: skip
def test_every_sr_config_trains_a_step(path, hr_folder, tmp_path, monkeypatch):
    """The config's real network (full size) takes one Adam step on one tiny patch."""
    monkeypatch.setenv("FEATSR_CACHE", str(tmp_path / "cache"))  # featsr:// converts there
    cfg = get_sr_cfg(path)
    scale = cfg.MODEL.SR.SCALE
    cfg = tiny_cfg(hr_folder, tmp_path, "INPUT.SR.PATCH_SIZE", 4 * scale,
                   "SOLVER.IMS_PER_BATCH", 1, "SOLVER.MAX_ITER", 1, config=path)  # fmt: skip
    trainer = SRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    with EventStorage(0) as trainer.storage:  # one step, without writing a checkpoint
        trainer.iter = 0
        trainer.run_step()
        assert math.isfinite(trainer.storage.history("total_loss").latest())
    after = trainer.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)


def test_a_few_iterations_lower_the_loss(hr_folder, tmp_path):
    cfg = tiny_cfg(hr_folder, tmp_path, *TINY_CAJNN, "INPUT.SR.DEGRADATIONS", ["bicubic", "jpeg"],
                   "MODEL.SR.LOSS", "Charbonnier", "SOLVER.BASE_LR", 1e-3)  # fmt: skip
    torch.manual_seed(0)
    model = build_sr_network(cfg)
    sampler = SRPatchSampler(cfg)
    lr, hr = sampler.batch(0)
    assert lr.shape == (2, 3, 8, 8) and hr.shape == (2, 3, 32, 32)
    loss_fn = build_sr_loss(cfg)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    with torch.no_grad():
        first = loss_fn(model(lr), hr).item()
    for k in range(25):
        a, b = sampler.batch(k % 3)
        loss = loss_fn(model(a), b)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    with torch.no_grad():
        last = loss_fn(model(lr), hr).item()
    assert last < 0.9 * first, (first, last)


def test_losses_and_cosine_restarts(hr_folder, tmp_path):
    x, y = torch.zeros(1, 3, 2, 2), torch.full((1, 3, 2, 2), 0.5)
    for name, value in (("L1", 0.5), ("MSE", 0.25), ("Charbonnier", math.sqrt(0.25 + 1e-6))):
        cfg = tiny_cfg(hr_folder, tmp_path, "MODEL.SR.LOSS", name)
        assert math.isclose(build_sr_loss(cfg)(x, y).item(), value, rel_tol=1e-6)
    sched = CosineRestartsParamScheduler(period=10, max_iter=30, end_value=0.01)
    assert sched(0) == 1.0 and math.isclose(sched(5 / 30), 0.505)
    assert math.isclose(sched(10 / 30), 1.0) and sched(9 / 30) < 0.05  # restarted
    cfg = tiny_cfg(hr_folder, tmp_path, "SOLVER.LR_SCHEDULER_NAME", "CosineRestartsLR",
                   "SOLVER.BASE_LR", 2e-4, "SOLVER.SR.RESTART_PERIOD", 4,
                   "SOLVER.SR.MIN_LR", 1e-7, "SOLVER.MAX_ITER", 8)  # fmt: skip
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=2e-4)
    scheduler = build_sr_lr_scheduler(cfg, optimizer)
    lrs = []
    for _ in range(8):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert math.isclose(lrs[0], 2e-4) and math.isclose(lrs[4], 2e-4)
    assert math.isclose(lrs[2], 1e-7 + (2e-4 - 1e-7) * 0.5) and lrs[3] < lrs[2] < lrs[1]


def _train(cfg, stop_at=None):
    torch.manual_seed(0)  # the same initialization for every run
    trainer = SRTrainer(cfg)
    if stop_at is not None:
        trainer.register_hooks([StopAfter(stop_at - 1)])  # killed before iteration stop_at
    trainer.resume_or_load(resume=True)
    trainer.train()
    return trainer


def test_stop_and_resume_matches_an_uninterrupted_run(hr_folder, tmp_path):
    opts = [*TINY_DBPN, "TEST.SR.SAMPLE_PERIOD", 3]
    straight = _train(tiny_cfg(hr_folder, tmp_path / "straight", *opts))

    out = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        _train(tiny_cfg(hr_folder, out, *opts), stop_at=4)  # checkpoint after iteration 2 only
    assert (out / "last_checkpoint").read_text() == "model_0000002.pth"
    saved = torch.load(out / "model_0000002.pth", weights_only=False)
    assert saved["iteration"] == 2

    resumed = SRTrainer(tiny_cfg(hr_folder, out, *opts))
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    state = resumed.optimizer.state_dict()["state"]
    for k, v in saved["optimizer"]["state"].items():  # Adam's moments and step count restored
        assert torch.equal(state[k]["exp_avg"], v["exp_avg"])
        assert torch.equal(state[k]["exp_avg_sq"], v["exp_avg_sq"])
        assert torch.equal(torch.as_tensor(state[k]["step"]), torch.as_tensor(v["step"]))
    resumed.train()

    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.allclose(a[k], b[k], rtol=0, atol=1e-7) for k in a)
    assert resumed.scheduler.last_epoch == straight.scheduler.last_epoch == 6

    files = set(os.listdir(out))
    assert {"model_final.pth", "last_checkpoint", "metrics.json"} <= files
    assert any(f.startswith("events.out.tfevents") for f in files)  # TensorBoard scalars
    assert not [f for f in files if f.endswith(".tmp")]
    assert sorted(os.listdir(out / "samples")) == ["iter_0000002.png", "iter_0000005.png"]
    with open(out / "metrics.json") as f:
        records = [json.loads(line) for line in f]
    assert any("sample/psnr" in r for r in records) and any("loss_l1" in r for r in records)


def test_train_and_eval_tools(hr_folder, tmp_path):
    """tools/train_sr.py trains and resumes; tools/eval_sr.py evaluates the result."""
    train = runpy.run_path(os.path.join(REPO, "tools", "train_sr.py"))
    out = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    cfg = tiny_cfg(hr_folder, out, *TINY_DBPN, "SOLVER.MAX_ITER", 2)
    config.write_text(cfg.dump())
    args = default_argument_parser().parse_args(["--config-file", str(config)])
    train["main"](args)
    args = default_argument_parser().parse_args(["--config-file", str(config), "--resume",
                                                  "SOLVER.MAX_ITER", "3"])  # fmt: skip
    trainer = train["main"](args)
    assert trainer.start_iter == 2 and trainer.iter == 3

    evaluate = runpy.run_path(os.path.join(REPO, "tools", "eval_sr.py"))
    results = evaluate["main"]([
        "--model", f"DBPN={config}@{out / 'model_final.pth'}", "--images", hr_folder,
        "--qualities", "10", "0", "--output", str(tmp_path / "eval"), "MODEL.DEVICE", "cpu",
    ])  # fmt: skip
    assert set(results["mean"]) == {"Bicubic", "DBPN"}
    assert results["settings"]["crop_border"] == 4 and results["settings"]["channel"] == "Y"
    assert len(os.listdir(tmp_path / "eval" / "vis")) == 6
    table = (tmp_path / "eval" / "table.md").read_text()
    assert "| DBPN |" in table and "| Bicubic |" in table
    np.testing.assert_allclose(
        results["parameters"]["DBPN"], sum(p.numel() for p in build_sr_network(cfg).parameters())
    )
