"""A corrupted converted-weights cache is detected by its checksum and converted again."""

import logging

import torch
from detectron2.checkpoint import DetectionCheckpointer
from detectron2.utils.file_io import PathManager
from torch import nn

from featsr_d2.checkpoint.converted_weights import ConvertedWeightsPathHandler
from featsr_d2.utils.file_io import atomic_write


class _ToyHandler(ConvertedWeightsPathHandler):
    PREFIX = "featsr-cache-test://"
    NAMES = ("linear",)
    WHAT = "test weights"
    conversions = 0

    def _cache_file(self, name):
        return f"{name}.pth"

    def _convert(self, name, out):
        type(self).conversions += 1
        state = {"weight": torch.full((2, 3), 0.25), "bias": torch.zeros(2)}
        atomic_write(out, lambda f: torch.save({"model": state}, f), binary=True)


PathManager.register_handler(_ToyHandler())
URI = "featsr-cache-test://linear"


def test_corrupted_cache_is_converted_again(tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("FEATSR_CACHE", str(tmp_path))
    _ToyHandler.conversions = 0
    local = PathManager.get_local_path(URI)
    assert _ToyHandler.conversions == 1 and (tmp_path / "linear.pth.sha256").is_file()
    assert PathManager.get_local_path(URI) == local and _ToyHandler.conversions == 1  # cached
    data = (tmp_path / "linear.pth").read_bytes()
    (tmp_path / "linear.pth").write_bytes(data[: len(data) // 2])  # a killed copy
    with caplog.at_level(logging.WARNING, logger="featsr_d2.checkpoint.converted_weights"):
        model = nn.Linear(3, 2)
        DetectionCheckpointer(model).load(URI)
    assert _ToyHandler.conversions == 2
    assert "does not match its checksum" in caplog.text and "converting it again" in caplog.text
    assert torch.equal(model.weight, torch.full((2, 3), 0.25))
    (tmp_path / "linear.pth.sha256").unlink()  # a conversion killed before its checksum
    PathManager.get_local_path(URI)
    assert _ToyHandler.conversions == 3
