"""Checkpoints are written atomically: a save that dies part-way leaves the previous files."""

import os

import pytest
import torch
from torch import nn

from featsr_d2.engine import AtomicDetectionCheckpointer


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
