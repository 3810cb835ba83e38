"""The TDSR checkpointer: building a TaskDrivenSR model reads no file; the checkpointer loads the
frozen detector's weights (strictly) and the SR network's initial weights unless the run's
checkpoint holds them, and reports a missing file clearly."""

import pytest
import torch
from common import tiny_tdsr_cfg as tiny_cfg
from detectron2.modeling import build_model

from featsr_d2.checkpoint import TDSRCheckpointer, WeightsFileError, load_detector_weights
from featsr_d2.config import get_detector_cfg
from featsr_d2.modeling.meta_arch.task_driven_sr import TaskDrivenSR

pytestmark = pytest.mark.usefixtures("one_thread")


def test_detector_weights_load_strictly(tiny_tt100k, tmp_path):
    cfg = tiny_cfg(tiny_tt100k, tmp_path)
    detector = build_model(get_detector_cfg(cfg))
    path = tmp_path / "detector.pth"
    torch.save({"model": detector.state_dict()}, path)
    tdsr_cfg = tiny_cfg(tiny_tt100k, tmp_path, "MODEL.TDSR.DETECTOR_WEIGHTS", str(path))
    model = build_model(tdsr_cfg)
    TDSRCheckpointer.from_config(tdsr_cfg, model).load("")
    loaded = model.detector.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in detector.state_dict().items())
    state = detector.state_dict()
    state.pop(next(k for k in state if k.startswith("roi_heads")))
    torch.save({"model": state}, path)
    with pytest.raises(RuntimeError, match="lacks 1 detector weights"):
        load_detector_weights(build_model(get_detector_cfg(cfg)), str(path))
    with pytest.raises(ValueError, match="alpha"):
        TaskDrivenSR(sr_network=model.sr, detector=model.detector, alpha=0.0, beta=0.0)


def test_detector_pkl_weights_are_refused_without_the_opt_in(tmp_path):
    """Reading a .pkl runs the code it holds: TDSR's detector weights need the opt-in too."""
    path = tmp_path / "detector.pkl"
    path.write_bytes(b"never unpickled")
    with pytest.raises(WeightsFileError, match="allow-pickle-weights"):
        load_detector_weights(torch.nn.Linear(1, 1), str(path))


def test_building_reads_no_weights(tiny_tt100k, tmp_path, monkeypatch):
    """Weights that do not exist do not stop the build (nothing is read: torch.load would raise);
    the checkpointer then names the missing file."""
    missing = str(tmp_path / "missing" / "detector.pth")
    cfg = tiny_cfg(
        tiny_tt100k, tmp_path, "MODEL.TDSR.DETECTOR_WEIGHTS", missing,
        "MODEL.SR.WEIGHTS", str(tmp_path / "missing" / "sr.pth"),
    )  # fmt: skip

    def no_load(*args, **kwargs):
        raise AssertionError("a weights file was read while building the model")

    with monkeypatch.context() as patch:
        patch.setattr(torch, "load", no_load)
        model = build_model(cfg)
    assert isinstance(model, TaskDrivenSR)
    with pytest.raises(WeightsFileError, match=r"DETECTOR_WEIGHTS: .*detector\.pth does not exist"):
        TDSRCheckpointer.from_config(cfg, model).load("")


def test_sr_initial_weights_and_resume(tiny_tt100k, tmp_path):
    """MODEL.SR.WEIGHTS is loaded when nothing else is; a checkpoint holding the whole model is
    loaded alone (the initial weights, here missing files, are not read)."""
    cfg = tiny_cfg(tiny_tt100k, tmp_path)
    model = build_model(cfg)
    sr = {k: v + 0.5 for k, v in model.sr.state_dict().items()}
    torch.save({"model": sr}, tmp_path / "sr.pth")
    detector = {k: v.clone() for k, v in model.detector.state_dict().items()}
    torch.save({"model": detector}, tmp_path / "detector.pth")
    weights = ["MODEL.SR.WEIGHTS", str(tmp_path / "sr.pth")]
    weights += ["MODEL.TDSR.DETECTOR_WEIGHTS", str(tmp_path / "detector.pth")]

    torch.manual_seed(1)
    fresh = build_model(tiny_cfg(tiny_tt100k, tmp_path, *weights))
    TDSRCheckpointer.from_config(tiny_cfg(tiny_tt100k, tmp_path, *weights), fresh).load("")
    assert all(torch.equal(v, fresh.sr.state_dict()[k]) for k, v in sr.items())
    assert all(torch.equal(v, fresh.detector.state_dict()[k]) for k, v in detector.items())

    whole = {k: v + 1.0 for k, v in fresh.state_dict().items()}
    torch.save({"model": whole}, tmp_path / "whole.pth")
    gone = ["MODEL.SR.WEIGHTS", str(tmp_path / "gone.pth")]
    gone += ["MODEL.TDSR.DETECTOR_WEIGHTS", str(tmp_path / "gone.pth")]
    cfg = tiny_cfg(tiny_tt100k, tmp_path, *gone)
    resumed = build_model(cfg)
    TDSRCheckpointer.from_config(cfg, resumed).load(str(tmp_path / "whole.pth"))
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.items())
