"""One run per output folder (issue 22.1): while a run holds its folder, every other run that
writes results there (train_net's set-up and trainer, the SR tools and trainer, the FeatSR study,
the evaluation tools) stops at once, naming the folder and the holder's process id, before it
writes anything; a killed holder's lock is taken over, with a message."""

from __future__ import annotations

import logging
import os
import re
import runpy
import signal
import subprocess
import sys
import textwrap

import pytest
from detectron2.engine import default_argument_parser

from featsr_d2.config import get_featsr_cfg, get_sr_cfg
from featsr_d2.engine import FeatSRTrainer, argument_parser, setup
from featsr_d2.engine.featsr_study import StudySettings, run_study
from featsr_d2.engine.sr_trainer import SRTrainer, setup_sr

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DETECTOR = os.path.join(REPO, "configs", "faster_rcnn_MNV2_FPN_synth.yaml")
SR_CONFIG = os.path.join(REPO, "configs", "sr", "quick_schedules", "cajnn_x4_jpeg_cpu.yaml")

# A first run: tools/train_net.py's set-up into OUTPUT_DIR, then it keeps running.
FIRST_RUN = textwrap.dedent(
    """
    import sys, time
    from featsr_d2.engine import argument_parser, setup
    args = argument_parser().parse_args(
        ["--config-file", sys.argv[1], "OUTPUT_DIR", sys.argv[2], "SOLVER.MAX_ITER", "3"]
    )
    setup(args)
    print("holding", flush=True)
    time.sleep(600)
    """
)


def _start_first_run(folder) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", FIRST_RUN, DETECTOR, str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=REPO,
    )
    lines = []
    for line in proc.stdout:  # its set-up's log, then "holding"
        if line.strip() == "holding":
            return proc
        lines.append(line)
    proc.wait()
    raise AssertionError("the first run did not start:\n" + "".join(lines)[-3000:])


@pytest.fixture(scope="module")
def held(tmp_path_factory):
    """A folder held by a running first run: (folder, its process id)."""
    folder = tmp_path_factory.mktemp("held") / "run"
    proc = _start_first_run(folder)
    yield folder, proc.pid
    proc.kill()
    proc.wait()


def _busy(folder, pid) -> str:
    return rf"{re.escape(os.path.realpath(folder))}.*in use by process {pid} "


def _config_yaml(folder) -> str:
    return (folder / "config.yaml").read_text()


def test_train_net_setup_stops_naming_folder_and_holder(held):
    folder, pid = held
    before = _config_yaml(folder)  # the first run's
    args = argument_parser().parse_args(
        ["--config-file", DETECTOR, "OUTPUT_DIR", str(folder), "SOLVER.MAX_ITER", "7"]
    )
    with pytest.raises(RuntimeError, match=_busy(folder, pid)):
        setup(args)
    assert _config_yaml(folder) == before  # stopped before writing its own config.yaml
    assert "MAX_ITER: 3" in before


def test_trainers_stop_before_building_anything(held):
    folder, pid = held
    cfg = get_featsr_cfg(DETECTOR, ["OUTPUT_DIR", str(folder)])
    with pytest.raises(RuntimeError, match=_busy(folder, pid)):
        FeatSRTrainer(cfg)
    cfg = get_sr_cfg(SR_CONFIG, ["OUTPUT_DIR", str(folder), "MODEL.DEVICE", "cpu"])
    with pytest.raises(RuntimeError, match=_busy(folder, pid)):
        SRTrainer(cfg)


def test_sr_tool_setup_stops(held):
    folder, pid = held
    args = default_argument_parser().parse_args(
        ["--config-file", SR_CONFIG, "OUTPUT_DIR", str(folder), "MODEL.DEVICE", "cpu"]
    )
    with pytest.raises(RuntimeError, match=_busy(folder, pid)):
        setup_sr(args)


def test_study_stops(held, tmp_path):
    folder, pid = held
    weights = tmp_path / "stage1.pth"
    weights.write_bytes(b"")
    settings = StudySettings(
        stage2_config=os.path.join(REPO, "configs", "featsr_MNV2_FPN_synth.yaml"),
        stage3_config=os.path.join(REPO, "configs", "featsr_MNV2_FPN_synth_stage3.yaml"),
        weights=str(weights),
        out_dir=str(folder),
    )
    with pytest.raises(RuntimeError, match=_busy(folder, pid)):
        run_study(settings)
    assert not (folder / "settings.json").exists()


@pytest.mark.parametrize("tool", ["eval_sr.py", "eval_lr_detection.py"])
def test_evaluation_tools_stop(held, tool):
    folder, pid = held
    main = runpy.run_path(os.path.join(REPO, "tools", tool))["main"]
    argv = ["--output", str(folder), "MODEL.DEVICE", "cpu"]
    if tool == "eval_lr_detection.py":
        argv = ["--config", os.path.join(REPO, "configs", "tdsr", "tdsr_dbpn_x4_synth.yaml"), *argv]
    else:
        argv = ["--scale", "2", "--images", "bundled:test", "--qualities", "0", *argv]
    with pytest.raises(RuntimeError, match=_busy(folder, pid)):
        main(argv)
    assert not (folder / "results.json").exists()


def test_a_killed_holders_lock_is_taken_over_with_a_message(tmp_path, caplog):
    folder = tmp_path / "run"
    first = _start_first_run(folder)
    first.send_signal(signal.SIGKILL)
    first.wait()
    args = argument_parser().parse_args(["--config-file", DETECTOR, "OUTPUT_DIR", str(folder)])
    with caplog.at_level(logging.WARNING):
        setup(args)  # no error: the holder is gone
    taken = [r.getMessage() for r in caplog.records if "Took over the output folder" in r.message]
    assert len(taken) == 1 and f"process {first.pid} " in taken[0], caplog.text


def test_a_released_folder_is_free_and_holding_is_reentrant(tmp_path, caplog):
    from featsr_d2.utils.output_lock import hold_output_dir

    folder = tmp_path / "run"
    with hold_output_dir(str(folder)), hold_output_dir(str(folder) + "/"):
        pass
    # Released: a later run holds it without taking anything over.
    second = _start_first_run(folder)
    try:
        with pytest.raises(RuntimeError, match=_busy(folder, second.pid)):
            with hold_output_dir(str(folder)):
                pass
    finally:
        second.kill()
        out, _ = second.communicate()
    assert "Took over" not in out


def test_a_file_system_without_locks_warns_and_goes_on(tmp_path, monkeypatch, caplog):
    import errno
    import fcntl

    from featsr_d2.utils.output_lock import hold_output_dir

    def no_flock(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    with caplog.at_level(logging.WARNING), hold_output_dir(str(tmp_path / "run")):
        pass
    assert "Cannot lock the output folder" in caplog.text and "would not be stopped" in caplog.text
