"""A JPEG whose header reads but whose body is truncated: named, or skipped and counted, in the
training loader (and skipped at the same place when a run resumes); likewise a path that is not a
regular file and an EXIF orientation that the dataset's size ignores."""

import logging
import os
import uuid

import numpy as np
import pytest
from common import call_guarding_fifo
from detectron2.data import DatasetCatalog, DatasetMapper, MetadataCatalog
from detectron2.data import detection_utils as utils
from PIL import Image

from featsr_d2.config import get_featsr_cfg
from featsr_d2.core.synthetic import generate_synthetic_tt100k
from featsr_d2.data import register_tt100k_instances
from featsr_d2.data.checked_mapper import CheckedMapper, UnreadableImageError
from featsr_d2.data.resumable_loader import build_resumable_train_loader
from featsr_d2.engine import FeatSRTrainer


def _truncate(path, keep=0.8):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: int(len(data) * keep)])


@pytest.fixture(scope="module")
def broken_dataset(tmp_path_factory):
    """A registered 6-image train split whose second image has a truncated body."""
    root = str(tmp_path_factory.mktemp("broken"))
    generate_synthetic_tt100k(
        root, num_train=6, num_test=0, image_size=64, workers=1, progress=False
    )
    with open(os.path.join(root, "train", "ids.txt")) as f:
        ids = f.read().split()
    bad = os.path.join(root, "train", f"{ids[1]}.jpg")
    _truncate(bad)
    names = {}
    for policy in ("error", "skip"):
        name = f"_test_broken_{policy}_{uuid.uuid4().hex[:6]}"
        register_tt100k_instances(name, root, "train")
        names[policy] = name
    yield names, bad, len(ids)
    for name in names.values():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)


def _read(d):
    return utils.read_image(d["file_name"], format="BGR")


def test_checked_mapper_names_or_skips(broken_dataset, caplog):
    _, bad, _ = broken_dataset
    with pytest.raises(UnreadableImageError, match=r"\.jpg: the image cannot be decoded") as e:
        CheckedMapper(_read, "error")({"file_name": bad})
    assert bad in str(e.value) and "ON_BAD_RECORD skip" in str(e.value)
    skipping = CheckedMapper(_read, "skip")
    with caplog.at_level(logging.WARNING, logger="featsr_d2.data.checked_mapper"):
        assert skipping({"file_name": bad}) is None
        assert skipping({"file_name": bad}) is None
    assert skipping.skipped == 2 and f"Skipped {bad}" in caplog.text
    assert "2 image(s) skipped" in caplog.text

    def buggy(d):
        raise KeyError("not the image's fault")

    good = bad.replace(os.path.basename(bad), sorted(os.listdir(os.path.dirname(bad)))[0])
    with pytest.raises(KeyError, match="not the image's fault"):
        CheckedMapper(buggy, "skip")({"file_name": good})


def _loader(name, policy, tmp_path):
    cfg = get_featsr_cfg(
        None,
        [
            "DATASETS.TRAIN", (name,), "DATASETS.TT100K.ON_BAD_RECORD", policy,
            "SOLVER.IMS_PER_BATCH", 2, "DATALOADER.NUM_WORKERS", 0, "SEED", 3,
            "INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 64,
            "DATALOADER.FILTER_EMPTY_ANNOTATIONS", False, "OUTPUT_DIR", str(tmp_path),
        ],
    )  # fmt: skip
    return build_resumable_train_loader(cfg)


def test_training_loader_names_or_skips_the_broken_image(broken_dataset, tmp_path):
    names, bad, num = broken_dataset
    with pytest.raises(UnreadableImageError, match="cannot be decoded"):
        for _ in zip(range(num), _loader(names["error"], "error", tmp_path)):
            pass
    loader = _loader(names["skip"], "skip", tmp_path)
    seen = [d["file_name"] for _, batch in zip(range(num), loader) for d in batch]
    assert len(seen) == 2 * num and bad not in seen  # more than an epoch, never the broken one
    # Resumed from the state after 2 batches: the same batches as the uninterrupted run.
    first = _loader(names["skip"], "skip", tmp_path)
    it = iter(first)
    head = [next(it) for _ in range(2)]
    resumed = _loader(names["skip"], "skip", tmp_path)
    resumed.load_state_dict(first.state_dict())
    tail = [d["file_name"] for _, batch in zip(range(num - 2), resumed) for d in batch]
    assert [d["file_name"] for b in head for d in b] + tail == seen


def test_evaluation_loader_names_the_broken_image(broken_dataset):
    names, bad, _ = broken_dataset
    cfg = get_featsr_cfg(None, ["MODEL.DEVICE", "cpu", "DATALOADER.NUM_WORKERS", "0"])
    with pytest.raises(UnreadableImageError, match=os.path.basename(bad)):
        for _ in FeatSRTrainer.build_test_loader(cfg, names["error"]):
            pass


def test_a_fifo_never_reaches_the_mapper(tmp_path, caplog):
    """Issue 22.8: a FIFO at an image path is named (error) or skipped and counted (skip), at
    once, whatever loader made the dataset dict."""
    fifo = str(tmp_path / "frame.jpg")
    os.mkfifo(fifo)
    with pytest.raises(UnreadableImageError, match=rf"{fifo}: it is a FIFO \(named pipe\)"):
        call_guarding_fifo(lambda: CheckedMapper(_read, "error")({"file_name": fifo}), fifo)
    skipping = CheckedMapper(_read, "skip")
    with caplog.at_level(logging.WARNING, logger="featsr_d2.data.checked_mapper"):
        assert call_guarding_fifo(lambda: skipping({"file_name": fifo}), fifo) is None
    assert skipping.skipped == 1 and f"Skipped {fifo}: it is a FIFO" in caplog.text


def test_an_exif_rotation_the_dataset_ignores_is_named_or_skipped(tmp_path, caplog):
    """Issue 22.7, for a dataset of another loader that gives the stored (unrotated) size:
    Detectron2's SizeMismatchError becomes an error naming the file and the EXIF cause."""
    path = str(tmp_path / "portrait.jpg")
    exif = Image.Exif()
    exif[274] = 6  # rotate 90 degrees when displayed
    Image.fromarray(np.zeros((48, 64, 3), np.uint8)).save(path, exif=exif.tobytes())
    cfg = get_featsr_cfg(None, ["INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 64])
    d = {"file_name": path, "width": 64, "height": 48, "image_id": 1, "annotations": []}
    with pytest.raises(UnreadableImageError, match=rf"{path}: its EXIF orientation \(6\) turns "
                       "the stored 64x48 image into 48x64"):  # fmt: skip
        CheckedMapper(DatasetMapper(cfg, is_train=True), "error")(dict(d))
    with caplog.at_level(logging.WARNING, logger="featsr_d2.data.checked_mapper"):
        assert CheckedMapper(DatasetMapper(cfg, is_train=True), "skip")(dict(d)) is None
    assert "EXIF orientation" in caplog.text
