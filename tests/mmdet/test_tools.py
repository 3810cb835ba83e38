"""tools/mmdet_train.py trains a tiny TDSR config into a work dir and resumes it, and
tools/mmdet_test.py evaluates the checkpoint (subprocesses, as a user runs them)."""

import os
import subprocess
import sys

import torch
from tiny_configs import REPO, write_tiny_tdsr


def _run(*argv, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=REPO)
    proc = subprocess.run(
        [sys.executable, *argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def test_train_resume_and_test(tmp_path, tiny_synth10):
    from featsr_d2.mmdet.checkpoints import load_checkpoint_file

    config = write_tiny_tdsr(tmp_path, tiny_synth10)
    train = os.path.join(REPO, "tools", "mmdet_train.py")
    work_dir = tmp_path / "work"

    log = _run(train, config, "--work-dir", str(work_dir), cwd=tmp_path)
    assert "Iter(train) [2/2]" in log and "tt100k/all_f1" in log  # trained, then validated
    assert {"iter_1.pth", "iter_2.pth", "last_checkpoint"} <= set(os.listdir(work_dir))

    log = _run(train, config, "--work-dir", str(work_dir), "--resume",
               "--cfg-options", "train_cfg.max_iters=3", cwd=tmp_path)  # fmt: skip
    assert "resumed epoch: 0, iter: 2" in log and "Iter(train) [3/3]" in log
    assert "Iter(train) [1/3]" not in log
    second, third = (load_checkpoint_file(str(work_dir / f"iter_{i}.pth")) for i in (2, 3))
    assert third["meta"]["iter"] == 3
    changed = {k.split(".")[0] for k in second["state_dict"]
               if not torch.equal(second["state_dict"][k], third["state_dict"][k])}  # fmt: skip
    assert changed == {"sr"}  # the frozen detector is the same in both checkpoints

    log = _run(os.path.join(REPO, "tools", "mmdet_test.py"), config, str(work_dir / "iter_3.pth"),
               "--work-dir", str(tmp_path / "test"), "--out", str(tmp_path / "pred.pkl"),
               cwd=tmp_path)  # fmt: skip
    assert "Load checkpoint from" in log and "tt100k/all_f1" in log
    assert (tmp_path / "pred.pkl").stat().st_size > 0


def test_the_config_and_work_dir_as_mmdetections_tools_choose_them(tmp_path):
    from featsr_d2.mmdet.runner import load_config

    config = write_tiny_tdsr(tmp_path, str(tmp_path))
    cfg = load_config(config, cfg_options={"model.beta": 0.5})
    # the config's own work_dir (tdsr_dbpn_x4_synth10.py's, which it inherits)
    assert cfg.work_dir == "work_dirs/tdsr_dbpn_x4_synth10" and cfg.model.beta == 0.5
    assert cfg.launcher == "none"
    assert load_config(config, work_dir="elsewhere").work_dir == "elsewhere"
    shipped = load_config("mmdet::pascal_voc/ssd300_voc0712.py")  # a config MMDetection ships
    assert shipped.model.type == "SingleStageDetector"
    # a config without a work_dir: named after the config (tdsr_dbpn_x4_voc.py's detector)
    assert shipped.work_dir == "./work_dirs/ssd300_voc0712"
