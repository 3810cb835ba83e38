"""A training step and an evaluation from every config; an end-to-end run of tools/train_net.py
that is stopped, resumed and evaluated."""

import glob
import json
import math
import os
import subprocess
import sys

import pytest
import torch
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.utils.events import EventStorage

from featsr_d2.config import get_featsr_cfg
from featsr_d2.engine import FeatSRTrainer

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Detector configs; configs/sr/ trains image-SR networks (tests/engine/test_sr_training.py) and
# configs/tdsr/ SR networks through a frozen detector, with their own trainer and a detector config
# of their own (tests/modeling/test_task_driven_sr.py trains and resumes them).
CONFIGS = sorted(
    p
    for p in glob.glob(os.path.join(REPO, "configs", "**", "*.yaml"), recursive=True)
    if os.path.relpath(p, os.path.join(REPO, "configs")).split(os.sep)[0] not in ("sr", "tdsr")
)


def tiny_cfg(config_file, train_name, test_name, output_dir, **extra):
    """The config at its architecture, shrunk to the tiny dataset and a few CPU iterations."""
    cfg = get_featsr_cfg(config_file)
    opts = {
        "MODEL.WEIGHTS": "",
        "MODEL.DEVICE": "cpu",
        "MODEL.ROI_HEADS.NUM_CLASSES": 45,
        "MODEL.RPN.POST_NMS_TOPK_TRAIN": 64,
        "MODEL.RPN.POST_NMS_TOPK_TEST": 64,
        "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE": 32,
        "DATASETS.TRAIN": (train_name,),
        "DATASETS.TEST": (test_name,),
        "DATALOADER.NUM_WORKERS": 0,
        "SOLVER.IMS_PER_BATCH": 2,
        "SOLVER.MAX_ITER": 1,
        "SOLVER.STEPS": (),
        "SOLVER.WARMUP_ITERS": 0,
        "INPUT.MIN_SIZE_TRAIN": (128,),
        "INPUT.MAX_SIZE_TRAIN": 128,
        "INPUT.MIN_SIZE_TEST": 128,
        "INPUT.MAX_SIZE_TEST": 128,
        "TEST.EVAL_PERIOD": 0,
        "TEST.TT100K.NUM_VIS_IMAGES": 2,
        "MODEL.FEATSR.GENERATOR.NUM_BLOCKS": 1,
        "MODEL.FEATSR.GENERATOR.HIDDEN_CHANNELS": 16,
        "MODEL.FEATSR.DISCRIMINATOR.HIDDEN_DIM": 32,
        "MODEL.FEATSR.DISCRIMINATOR.POOL_SIZE": 2,
        "OUTPUT_DIR": str(output_dir),
    }
    opts.update(extra)
    cfg.merge_from_list([x for kv in opts.items() for x in kv])
    return cfg


@pytest.mark.parametrize("config_file", CONFIGS, ids=lambda p: os.path.relpath(p, REPO))
def test_train_step_and_evaluation(config_file, tiny_tt100k, tmp_path):
    train_name, test_name, _ = tiny_tt100k
    cfg = tiny_cfg(config_file, train_name, test_name, tmp_path)
    trainer = FeatSRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    before = {k: v.clone() for k, v in trainer.model.named_parameters() if v.requires_grad}
    results = trainer.train()  # one iteration, then the final evaluation

    assert math.isfinite(trainer.storage.history("total_loss").latest())
    changed = [
        k
        for k, v in trainer.model.named_parameters()
        if k in before and not torch.equal(v, before[k])
    ]
    assert changed, "one SGD step changed no parameter"
    table = results["tt100k"]
    for size in ("small", "medium", "large", "all"):
        for metric in ("recall", "accuracy", "f1"):
            assert 0.0 <= table[f"{size}_{metric}"] <= 100.0
    out = os.path.join(str(tmp_path), "inference", test_name)
    assert os.path.isfile(os.path.join(out, "tt100k_results.json"))
    assert os.path.isfile(os.path.join(out, "tt100k_curve.png"))


def test_training_losses_with_an_image_without_ground_truth(tiny_tt100k, tmp_path):
    train_name, test_name, _ = tiny_tt100k
    cfg = tiny_cfg(
        os.path.join(REPO, "configs", "faster_rcnn_MNV2_FPN_synth.yaml"),
        train_name,
        test_name,
        tmp_path,
    )
    model = FeatSRTrainer.build_model(cfg)
    model.train()
    dicts = DatasetCatalog.get(train_name)
    with_gt = next(d for d in dicts if d["annotations"])
    without_gt = dict(with_gt, annotations=[])
    mapper = DatasetMapper(cfg, is_train=True)
    with EventStorage():
        losses = model([mapper(dict(with_gt)), mapper(without_gt)])
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad and p.grad is not None]
    assert grads and any(g.abs().sum() > 0 for g in grads)


def _train_net(*args, datasets_root, timeout=600):
    env = dict(os.environ, DETECTRON2_DATASETS=datasets_root, PYTHONUNBUFFERED="1")
    cmd = [sys.executable, os.path.join(REPO, "tools", "train_net.py"), *args]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout, cwd=REPO)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    return out.stdout + out.stderr


def test_train_net_end_to_end_stop_resume_eval(tiny_tt100k, tmp_path):
    """train_net.py trains 4 iterations, resumes to 6 without redoing any, then --eval-only."""
    _, _, root = tiny_tt100k
    datasets_root = tmp_path / "datasets"
    datasets_root.mkdir()
    os.symlink(root, datasets_root / "tt100k_synth")
    output = tmp_path / "run"
    config = os.path.join(
        REPO, "configs", "quick_schedules", "faster_rcnn_MNV2_FPN_synth_quick.yaml"
    )
    common = [
        "MODEL.WEIGHTS", "", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.CHECKPOINT_PERIOD", "2",
        "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "128",
        "INPUT.MIN_SIZE_TEST", "128", "INPUT.MAX_SIZE_TEST", "128",
        "DATALOADER.NUM_WORKERS", "0", "OUTPUT_DIR", str(output),
        # the tiny set holds the 45 type45 classes (the demo's own set has ten)
        "DATASETS.TRAIN", "('tt100k_synth_train',)", "DATASETS.TEST", "('tt100k_synth_test',)",
        "MODEL.ROI_HEADS.NUM_CLASSES", "45", "TEST.TT100K.TYPES", "type45",
    ]  # fmt: skip
    _train_net(
        "--config-file", config, *common, "SOLVER.MAX_ITER", "4", datasets_root=str(datasets_root)
    )
    assert (output / "last_checkpoint").read_text() == "model_final.pth"
    assert torch.load(output / "model_final.pth", weights_only=False)["iteration"] == 3

    log = _train_net(
        "--config-file", config, "--resume", *common, "SOLVER.MAX_ITER", "6",
        datasets_root=str(datasets_root),
    )  # fmt: skip
    assert "Starting training from iteration 4" in log
    with open(output / "metrics.json") as f:
        iters = [json.loads(line).get("iteration") for line in f]
    assert 5 in iters and 3 in iters  # rows of both runs, the second starting after the first

    log = _train_net(
        "--config-file", config, "--eval-only", *common,
        "MODEL.WEIGHTS", str(output / "model_final.pth"),
        datasets_root=str(datasets_root),
    )  # fmt: skip
    assert "Small" in log and "Overall" in log, log[-4000:]  # the TT100K table


def test_a_seeded_run_does_not_depend_on_the_converted_weights_cache(
    tiny_tt100k, tmp_path, monkeypatch
):
    """Converting featsr://imagenet/mobilenet_v2_fpn (cold cache) draws no random numbers of the
    run's: the same SEED trains the same weights with a cold and with a warm cache."""
    from detectron2.utils.env import seed_all_rng

    train_name, test_name, _ = tiny_tt100k
    monkeypatch.setenv("FEATSR_CACHE", str(tmp_path / "cache"))

    def run(name):
        cfg = tiny_cfg(
            os.path.join(REPO, "configs", "faster_rcnn_MNV2_FPN_synth.yaml"), train_name,
            test_name, tmp_path / name, **{"MODEL.WEIGHTS": "featsr://imagenet/mobilenet_v2_fpn",
                                           "TEST.TT100K.NUM_VIS_IMAGES": 0},
        )  # fmt: skip
        seed_all_rng(7)
        trainer = FeatSRTrainer(cfg)
        trainer.resume_or_load(resume=False)
        trainer.train()
        return {k: v.clone() for k, v in trainer.model.state_dict().items()}

    cold = run("cold")
    assert os.listdir(tmp_path / "cache"), "the first run should have converted the weights"
    warm = run("warm")
    differ = [k for k in cold if not torch.equal(cold[k], warm[k])]
    assert not differ, f"{len(differ)} of {len(cold)} tensors differ, e.g. {differ[:3]}"
