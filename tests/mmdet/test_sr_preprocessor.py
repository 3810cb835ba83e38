"""FeatSRSuperResolvePreprocessor in front of a tiny MMDetection detector; SR and detector weights
from either framework's checkpoints; the restricted reader of mmengine's checkpoints."""

import os

import numpy as np
import pytest
import torch
from tiny_configs import TINY_FASTER_RCNN

DETECTOR_PREPROCESSOR = dict(
    type="DetDataPreprocessor",
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    bgr_to_rgb=True,
    pad_size_divisor=32,
)


def _tiny_detector(data_preprocessor):
    """mmdet's Faster R-CNN R50-FPN base shrunk (tiny_configs), 10 classes."""
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.hub import get_config

    import featsr_d2.mmdet  # noqa: F401  (registers the pre-processor and the SR networks)

    register_all_modules()
    base = get_config("mmdet::_base_/models/faster-rcnn_r50_fpn.py").model
    cfg = Config(dict(model=base))
    cfg.merge_from_dict({"model": TINY_FASTER_RCNN})
    cfg.model.roi_head.bbox_head.num_classes = 10
    cfg.model.data_preprocessor = data_preprocessor
    torch.manual_seed(0)
    return MODELS.build(cfg.model).eval()


def _lr_batch():
    """Two LR images (BGR uint8, 40x48 and 36x52) with their test-time data samples."""
    from mmdet.structures import DetDataSample

    rng = np.random.default_rng(0)
    inputs, samples = [], []
    for h, w in ((40, 48), (36, 52)):
        inputs.append(torch.from_numpy(rng.integers(0, 256, (3, h, w), dtype=np.uint8)))
        sample = DetDataSample()
        sample.set_metainfo(
            {"img_shape": (h, w), "ori_shape": (h, w), "scale_factor": (1.0, 1.0), "img_id": w}
        )
        samples.append(sample)
    return {"inputs": inputs, "data_samples": samples}


def test_the_preprocessor_super_resolves_in_front_of_a_detector():
    """With MATLAB bicubic x2 as the SR network, the detector's predictions on the LR images
    through the pre-processor equal its predictions on the bicubic images, mapped back to the LR
    images' coordinates."""
    from featsr_d2.core.sr import Bicubic

    wrapper = dict(
        type="FeatSRSuperResolvePreprocessor",
        sr=dict(type="FeatSRBicubic", scale=2),
        detector_preprocessor=DETECTOR_PREPROCESSOR,
    )
    with_sr = _tiny_detector(wrapper)
    plain = _tiny_detector(DETECTOR_PREPROCESSOR)
    plain.load_state_dict(with_sr.state_dict(), strict=False)
    assert type(with_sr.data_preprocessor).__name__ == "FeatSRSuperResolvePreprocessor"

    with torch.no_grad():
        outputs = with_sr.test_step(_lr_batch())
        batch = _lr_batch()
        hr_inputs = []
        for image, sample in zip(batch["inputs"], batch["data_samples"]):
            rgb = image.flip(0).float().div(255.0)[None]
            hr_inputs.append(Bicubic(scale=2)(rgb)[0].clamp(0, 1).flip(0) * 255.0)
            h, w = sample.img_shape
            sample.set_metainfo({"img_shape": (2 * h, 2 * w), "scale_factor": (2.0, 2.0)})
        expected = plain.test_step({"inputs": hr_inputs, "data_samples": batch["data_samples"]})
    for out, ref in zip(outputs, expected):
        assert out.img_shape == ref.img_shape and out.ori_shape == ref.ori_shape
        assert out.scale_factor == (2.0, 2.0) and out.batch_input_shape == ref.batch_input_shape
        assert len(out.pred_instances) > 0
        torch.testing.assert_close(out.pred_instances.bboxes, ref.pred_instances.bboxes)
        torch.testing.assert_close(out.pred_instances.scores, ref.pred_instances.scores)
        h, w = out.ori_shape  # in the LR image's coordinates
        assert float(out.pred_instances.bboxes[:, 2].max()) <= w
        assert float(out.pred_instances.bboxes[:, 3].max()) <= h
    with pytest.raises(RuntimeError, match="inference only"):
        with_sr.data_preprocessor(_lr_batch(), training=True)


def _tiny_dbpn():
    from mmdet.registry import MODELS

    import featsr_d2.mmdet  # noqa: F401  (registers DBPN)

    return MODELS.build(dict(type="DBPN", scale=2, feat=8, base_filter=4, num_stages=2))


@pytest.mark.parametrize("layout", ["detectron2", "tdsr", "preprocessor", "plain"])
def test_sr_weights_from_either_frameworks_checkpoints(tmp_path, layout):
    from mmengine.logging import HistoryBuffer

    from featsr_d2.mmdet.checkpoints import load_sr_weights

    trained = _tiny_dbpn()
    state = trained.state_dict()
    history = HistoryBuffer()
    history.update(1.0)
    checkpoint = {
        "detectron2": {"model": state, "iteration": 5},
        "tdsr": {
            "state_dict": {**{f"sr.{k}": v for k, v in state.items()}, "detector.w": torch.ones(1)},
            "message_hub": {"log_scalars": {"train/loss": history}},
            "meta": {"iter": 5},
        },
        "preprocessor": {"state_dict": {f"data_preprocessor.sr.{k}": v for k, v in state.items()}},
        "plain": state,
    }[layout]
    path = str(tmp_path / "sr.pth")
    torch.save(checkpoint, path)
    torch.manual_seed(1)
    network = _tiny_dbpn()
    assert not torch.equal(network.state_dict()["feat0.0.weight"], state["feat0.0.weight"])
    load_sr_weights(network, path)
    assert all(torch.equal(network.state_dict()[k], v) for k, v in state.items())


def test_weights_that_do_not_fit_are_named(tmp_path):
    from mmdet.registry import MODELS

    from featsr_d2.mmdet.checkpoints import load_detector_weights, load_sr_weights

    path = str(tmp_path / "other.pth")
    torch.save({"model": {"conv.weight": torch.zeros(1)}}, path)
    with pytest.raises(
        ValueError, match=r"other\.pth does not hold the weights of this SR network"
    ):
        load_sr_weights(_tiny_dbpn(), path)
    with pytest.raises(FileNotFoundError):
        load_sr_weights(_tiny_dbpn(), str(tmp_path / "none.pth"))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(ValueError, match=r"empty\.pth: not a readable checkpoint"):
        load_sr_weights(_tiny_dbpn(), str(tmp_path / "empty.pth"))

    detector = _tiny_detector(DETECTOR_PREPROCESSOR)
    tdsr = {"state_dict": {f"detector.{k}": v for k, v in detector.state_dict().items()}}
    torch.save(tdsr, path)
    fresh = MODELS.build(dict(type="FeatSRBicubic", scale=2))  # no parameter: nothing fits
    with pytest.raises(ValueError, match="detector"):
        load_detector_weights(fresh, path)
    torch.manual_seed(3)
    other = _tiny_detector(DETECTOR_PREPROCESSOR)
    load_detector_weights(other, path)  # the detector of a TDSR checkpoint
    assert all(torch.equal(other.state_dict()[k], v) for k, v in detector.state_dict().items())


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch payload_ran",))


class _GetattrPayload:
    def __reduce__(self):
        from mmengine.logging import HistoryBuffer

        return (getattr, (HistoryBuffer, "__init__"))


def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, monkeypatch):
    from featsr_d2.mmdet.checkpoints import CheckpointRefusedError, load_checkpoint_file

    monkeypatch.chdir(tmp_path)
    path = str(tmp_path / "evil.pth")
    torch.save({"state_dict": {"w": torch.ones(1)}, "meta": _Payload()}, path)
    with pytest.raises(
        CheckpointRefusedError, match=r"evil\.pth: refused global (posix|os)\.system"
    ):
        load_checkpoint_file(path)
    assert not (tmp_path / "payload_ran").exists()
    torch.save({"meta": _GetattrPayload()}, path)  # getattr beyond HistoryBuffer's statistics
    with pytest.raises(CheckpointRefusedError, match=r"getattr\(.*HistoryBuffer.*'__init__'\)"):
        load_checkpoint_file(path)
