"""Checkpoints are written atomically (a save that dies part-way leaves the previous files, and
its temporary file is removed later) and read carefully (.pkl refused without the opt-in,
unreadable files named, eval-only weights complete)."""

import logging
import os
import pathlib
import pickle
import re
import runpy
import socket
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from torch import nn

from featsr_d2.checkpoint import AtomicDetectionCheckpointer, WeightsFileError, allow_pickle_weights
from featsr_d2.utils.file_io import atomic_write_text


def test_save_load_roundtrip_and_tag(tmp_path):
    model = nn.Linear(3, 2)
    ckpt = AtomicDetectionCheckpointer(model, str(tmp_path))
    ckpt.save("model_0001", iteration=1)
    assert (tmp_path / "last_checkpoint").read_text() == "model_0001.pth"
    other = nn.Linear(3, 2)
    extra = AtomicDetectionCheckpointer(other, str(tmp_path)).resume_or_load("", resume=True)
    assert extra["iteration"] == 1
    assert torch.equal(other.weight, model.weight)
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_0001.pth"]  # no temp files


def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch):
    model = nn.Linear(3, 2)
    ckpt = AtomicDetectionCheckpointer(model, str(tmp_path))
    ckpt.save("model_final", iteration=1)
    before = (tmp_path / "model_final.pth").read_bytes()

    def dying_save(obj, f, *args, **kwargs):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with torch.no_grad():
        model.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save("model_final", iteration=2)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert sorted(os.listdir(tmp_path)) == ["last_checkpoint", "model_final.pth"]


# ---------------------------------------------------------------------------------------------
# Reading: .pkl refused without the opt-in, unreadable files named, eval-only strictness.


class _Payload:
    """Unpickling it touches a file: the proof that a .pkl ran code."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.fixture
def no_pickle():
    allow_pickle_weights(False)
    yield
    allow_pickle_weights(False)


def test_pkl_weights_refused_unless_opted_in(tmp_path, no_pickle):
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"model": {"weight": _Payload(marker)}}))
    ckpt = AtomicDetectionCheckpointer(nn.Linear(3, 2))
    for path in (str(evil), "detectron2://ImageNetPretrained/MSRA/R-50.pkl"):
        with pytest.raises(WeightsFileError, match=r"Refusing to load .*\.pkl") as e:
            ckpt.load(path)
        assert "--allow-pickle-weights" in str(e.value)
        assert "detectron2://ImageNetPretrained/MSRA/R-50.pkl" in str(e.value)
    assert not marker.exists()
    # Opted in: a model-zoo style .pkl of numpy arrays loads (and, being a pickle, could run code).
    model = nn.Linear(3, 2)
    weights = {"weight": np.full((2, 3), 0.5, np.float32), "bias": np.zeros(2, np.float32)}
    good = tmp_path / "zoo.pkl"
    good.write_bytes(pickle.dumps({"model": weights, "__author__": "test"}))
    allow_pickle_weights(True)
    AtomicDetectionCheckpointer(model).load(str(good))
    assert torch.equal(model.weight, torch.full((2, 3), 0.5))


def test_unreadable_weights_name_the_file(tmp_path, monkeypatch):
    ckpt = AtomicDetectionCheckpointer(nn.Linear(3, 2))
    empty = tmp_path / "empty.pth"
    empty.write_bytes(b"")
    with pytest.raises(WeightsFileError, match=r"empty\.pth: the weights file is empty"):
        ckpt.load(str(empty))
    text = tmp_path / "notes.pth"
    text.write_text("these are not weights\n")
    with pytest.raises(WeightsFileError, match=r"notes\.pth: not a readable checkpoint"):
        ckpt.load(str(text))
    full = tmp_path / "full.pth"
    torch.save({"model": nn.Linear(3, 2).state_dict()}, full)
    cache = tmp_path / "cache"
    cache.mkdir()
    monkeypatch.setenv("FEATSR_CACHE", str(cache))
    cut = cache / "converted.pth"
    cut.write_bytes(full.read_bytes()[:100])  # a killed copy
    with pytest.raises(WeightsFileError, match=r"converted\.pth: not a readable .*delete it") as e:
        ckpt.load(str(cut))
    assert "converts it again" in str(e.value)


def test_require_all_weights_refuses_another_architecture(tmp_path):
    other = tmp_path / "other.pth"
    torch.save({"model": nn.Sequential(nn.Linear(3, 5)).state_dict()}, other)
    model = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 2))
    strict = AtomicDetectionCheckpointer(model, require_all_weights=True)
    with pytest.raises(WeightsFileError, match=r"2 of the model's 4 weights are missing") as e:
        strict.load(str(other))
    assert "2 have another shape (0.weight: (5, 3) in the file, (2, 3) in the model" in str(e.value)
    with pytest.raises(WeightsFileError, match="No weights to evaluate"):
        strict.resume_or_load("", resume=False)
    # Lenient (training from a partial init) only warns; strict with matching weights loads.
    AtomicDetectionCheckpointer(model).load(str(other))
    same = tmp_path / "same.pth"
    torch.save({"model": model.state_dict()}, same)
    strict.load(str(same))


def test_train_net_eval_only_refuses_other_weights(tmp_path, one_thread_in_repo):
    train_net = runpy.run_path(os.path.join("tools", "train_net.py"), run_name="train_net")
    other = tmp_path / "classifier.pth"
    torch.save({"model": nn.Linear(3, 2).state_dict()}, other)
    args = train_net["argument_parser"]().parse_args(
        [
            "--config-file", "configs/quick_schedules/faster_rcnn_MNV2_FPN_synth_quick.yaml",
            "--eval-only", "MODEL.WEIGHTS", str(other), "MODEL.DEVICE", "cpu",
            "OUTPUT_DIR", str(tmp_path / "out"),
        ]
    )  # fmt: skip
    with pytest.raises(WeightsFileError, match=r"weights are missing .*not a checkpoint of this"):
        train_net["main"](args)


# ---------------------------------------------------------------------------------------------
# Temporary files of killed saves are removed when the next run's checkpointer starts.


def test_stale_temporaries_of_killed_saves_are_removed(tmp_path, caplog):
    """Only featsr_d2's own temporaries (TEMP_PREFIX) of gone writers are removed, each logged;
    a user's hidden file shaped like the older temporaries is kept however old (issue 22.3)."""
    host = re.sub(r"[^A-Za-z0-9_]", "_", socket.gethostname())[:24]
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_pid = int(dead.stdout)
    ours = ".featsr_d2-tmp."
    files = {
        f"{ours}model_0001.pth.{host}-{dead_pid}.abcd1234.tmp": False,  # killed writer: removed
        f"{ours}model_0002.pth.{host}-{os.getppid()}.abcd1234.tmp": True,  # live writer: kept
        f"{ours}model_0003.pth.otherhost-{dead_pid}.abcd1234.tmp": True,  # another host's, fresh
        f"{ours}model_0004.pth.otherhost-{dead_pid}.abcd1234.tmp": False,  # another's, 2 days old
        ".model_0005.pth.yyyy8888.tmp": True,  # not our prefix (a user's?), two days old: kept
        f".notes.{host}-{dead_pid}.abcd1234.tmp": True,  # a user's, shaped like ours: kept
        "notes.tmp": True,  # not ours
        "model_0001.pth": True,
    }
    for name in files:
        (tmp_path / name).write_bytes(b"x" * 10)
    two_days_ago = time.time() - 2 * 24 * 3600
    for name in (".model_0005.pth.yyyy8888.tmp", f"{ours}model_0004.pth.otherhost-{dead_pid}"
                 ".abcd1234.tmp", f".notes.{host}-{dead_pid}.abcd1234.tmp"):  # fmt: skip
        os.utime(tmp_path / name, (two_days_ago, two_days_ago))
    with caplog.at_level(logging.INFO, logger="featsr_d2.utils.file_io"):
        AtomicDetectionCheckpointer(nn.Linear(3, 2), str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == sorted(n for n, kept in files.items() if kept)
    removed = sorted(r.getMessage() for r in caplog.records if r.getMessage().startswith("Removed"))
    assert len(removed) == 2
    assert f"model_0001.pth.{host}-{dead_pid}" in removed[0] and "is gone" in removed[0]
    assert "model_0004.pth.otherhost" in removed[1] and "more than a day ago" in removed[1]


def test_atomic_writes_use_the_project_prefix(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (seen.append(a), real_replace(a, b)))
    atomic_write_text(str(tmp_path / "x.json"), "{}")
    assert len(seen) == 1 and os.path.basename(seen[0]).startswith(".featsr_d2-tmp.x.json.")


def test_atomic_write_of_a_long_file_name(tmp_path):
    name = "m" * 250 + ".pth"  # a temporary name adding host and pid must still fit in 255 bytes
    atomic_write_text(str(tmp_path / name), "ok")
    assert (tmp_path / name).read_text() == "ok"


def test_checkpoints_are_read_with_weights_only_said_explicitly(tmp_path, monkeypatch):
    """Issue 22.2: every weight reader of featsr_d2 passes weights_only=True itself (torch before
    2.6 defaults to False, which runs the code a file holds), not only on today's torch."""
    from featsr_d2.checkpoint import load_detector_weights

    model = nn.Linear(3, 2)
    AtomicDetectionCheckpointer(model, str(tmp_path)).save("model_final")
    calls = []
    real_load = torch.load
    monkeypatch.setattr(
        torch, "load", lambda *a, **k: (calls.append(k.get("weights_only")), real_load(*a, **k))[1]
    )
    AtomicDetectionCheckpointer(nn.Linear(3, 2)).load(str(tmp_path / "model_final.pth"))
    load_detector_weights(nn.Linear(3, 2), str(tmp_path / "model_final.pth"))
    assert calls == [True, True]
