"""FeatSRTT100KDataset: the same images, boxes and classes as the Detectron2 loader, the same bad
records named or skipped, the configs' pipelines, and images that stop decoding after loading."""

import logging
import os

import pytest
from detectron2.data import DatasetCatalog
from tt100k_trees import BAD_CASES, write_tt100k
from tt100k_trees import box as _box
from tt100k_trees import record as _rec

from featsr_d2.core.tt100k import TT100KFormatError
from featsr_d2.core.tt100k_categories import TYPE45
from featsr_d2.data import load_tt100k_json

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DATASET_CONFIGS = os.path.join(REPO, "configs", "mmdet", "_base_", "datasets")


def _build(cfg: dict):
    from mmdet.registry import DATASETS
    from mmdet.utils import register_all_modules

    import featsr_d2.mmdet  # noqa: F401  (registers FeatSRTT100KDataset)

    register_all_modules()  # the "mmdet" scope, as the configs' default_scope, for the pipelines
    return DATASETS.build(cfg)


def _dataset(root, split="train", **kwargs):
    cfg = dict(type="FeatSRTT100KDataset", data_root=root, split_file=f"{split}/ids.txt")
    return _build({**cfg, **kwargs})


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings_logged():
    """The warnings of mmengine's current logger (where the dataset reports skipped records)."""
    from mmengine.logging import MMLogger

    logger = MMLogger.get_current_instance()
    handler = _Records()
    logger.addHandler(handler)
    yield handler.messages
    logger.removeHandler(handler)


@pytest.mark.parametrize("split", ["train", "test"])
def test_same_images_boxes_and_classes_as_the_detectron2_loader(tiny_tt100k, split):
    train_name, test_name, root = tiny_tt100k
    d2 = DatasetCatalog.get(train_name if split == "train" else test_name)
    dataset = _dataset(root, split, test_mode=split == "test")
    assert dataset.metainfo["classes"] == TYPE45
    assert len(dataset) == len(d2) and len(d2) >= 4
    objects = 0
    for k, expected in enumerate(d2):
        info = dataset.get_data_info(k)
        assert info["img_id"] == str(expected["image_id"])
        assert info["img_path"] == expected["file_name"]
        assert (info["height"], info["width"]) == (expected["height"], expected["width"])
        anns = expected["annotations"]
        assert [i["bbox"] for i in info["instances"]] == [a["bbox"] for a in anns]
        assert [i["bbox_label"] for i in info["instances"]] == [a["category_id"] for a in anns]
        assert all(i["ignore_flag"] == 0 for i in info["instances"])
        assert [list(o["bbox"].values()) for o in info["tt100k_objects"]] == [
            a["tt100k_bbox"] for a in anns
        ]
        assert [o["category"] for o in info["tt100k_objects"]] == [
            TYPE45[a["category_id"]] for a in anns
        ]
        objects += len(anns)
    assert objects > 0


def test_class_set_all_follows_the_files_types(tmp_path):
    imgs = {"10": _rec(10, [{"category": "zz_other", "bbox": _box(5, 5, 9, 9)}])}
    write_tt100k(str(tmp_path), imgs, train_ids=[10])
    json_file, ids_file = str(tmp_path / "annotations.json"), str(tmp_path / "train" / "ids.txt")
    d2 = load_tt100k_json(json_file, ids_file, str(tmp_path), class_set="all")
    dataset = _dataset(str(tmp_path), class_set="all")
    assert dataset.metainfo["classes"] == ("pl40", "i2", "zz_other")
    assert [i["bbox_label"] for i in dataset.get_data_info(0)["instances"]] == [
        a["category_id"] for a in d2[0]["annotations"]
    ]
    assert _dataset(str(tmp_path), class_set="type45").get_data_info(0)["instances"] == []
    with pytest.raises(ValueError, match="do not match the class set 'all'"):
        _dataset(str(tmp_path), class_set="all", metainfo=dict(classes=("i2", "pl40", "zz_other")))
    with pytest.raises(ValueError, match="class_set"):
        _dataset(str(tmp_path), class_set="type99")
    with pytest.raises(ValueError, match="on_bad_record"):
        _dataset(str(tmp_path), on_bad_record="ignore")
    with pytest.raises(TT100KFormatError, match=r"annotation file not found.*data_root"):
        _dataset(str(tmp_path / "nowhere"))


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_records_raise_or_are_skipped_as_in_detectron2(tmp_path, case, warnings_logged):
    imgs, ids, fragments, kept = BAD_CASES[case]
    write_tt100k(str(tmp_path), imgs, train_ids=ids)
    if case == "missing image":
        os.remove(str(tmp_path / "train" / "nope.jpg"))
    with pytest.raises(TT100KFormatError) as e:
        _dataset(str(tmp_path))
    message = str(e.value)
    assert all(fragment in message for fragment in fragments), message
    assert "on_bad_record='skip' in the dataset's config" in message  # names the fix
    dataset = _dataset(str(tmp_path), on_bad_record="skip")
    assert len(dataset) == kept
    assert sum(len(dataset.get_data_info(k)["instances"]) for k in range(len(dataset))) == 0
    assert any(f"1 {case}" in m for m in warnings_logged), warnings_logged


def test_filter_empty_gt_in_training_only(tiny_tt100k):
    _, test_name, root = tiny_tt100k
    d2 = DatasetCatalog.get(test_name)
    empty = sum(1 for d in d2 if not d["annotations"])
    assert empty >= 1  # the fixture's image without ground truth
    kept = _dataset(root, "test", filter_cfg=dict(filter_empty_gt=True))
    assert len(kept) == len(d2) - empty
    tested = _dataset(root, "test", filter_cfg=dict(filter_empty_gt=True), test_mode=True)
    assert len(tested) == len(d2)


def test_the_configs_pipelines_pack_images_boxes_and_ground_truth(tiny_tt100k, tiny_synth10):
    from mmengine.config import Config

    _, _, root = tiny_tt100k
    for name, data_root, size, num_classes in (
        ("tt100k.py", root, 1600, 45),
        ("tt100k_synth10.py", tiny_synth10, 320, 10),
    ):
        cfg = Config.fromfile(os.path.join(DATASET_CONFIGS, name))
        assert cfg.val_evaluator.type == "FeatSRTT100KMetric"
        for loader, test_mode in ((cfg.train_dataloader, False), (cfg.test_dataloader, True)):
            dataset = _build({**loader.dataset, "data_root": data_root})
            assert (
                dataset.test_mode is test_mode and len(dataset.metainfo["classes"]) == num_classes
            )
            info = dataset.get_data_info(0)
            packed = dataset[0]
            assert tuple(packed["inputs"].shape) == (3, size, size)  # 128 px images, resized
            sample = packed["data_samples"]
            assert sample.img_id == info["img_id"]
            if test_mode:  # boxes as annotated, and the metric's ground truth
                assert sample.tt100k_objects == info["tt100k_objects"]
                expected = [i["bbox"] for i in info["instances"]]
            else:  # boxes follow the resize
                expected = [[v * size / 128 for v in i["bbox"]] for i in info["instances"]]
            flat = [v for b in sample.gt_instances.bboxes.tensor.tolist() for v in b]
            assert flat == pytest.approx([v for b in expected for v in b], abs=1e-3)


def _truncate(path):
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[: len(data) // 3])  # the header reads, the body does not decode


def test_an_image_that_stops_decoding_is_named_or_skipped(tmp_path, warnings_logged):
    from featsr_d2.core.image_files import UnreadableImageError

    imgs = {str(i): _rec(i, [{"category": "i2", "bbox": _box(2, 2, 30, 30)}]) for i in (1, 2)}
    write_tt100k(str(tmp_path), imgs, train_ids=[1, 2], size=(256, 256))
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", with_bbox=True)]
    datasets = {
        policy: _dataset(str(tmp_path), pipeline=pipeline, on_bad_record=policy)
        for policy in ("error", "skip")
    }
    tested = _dataset(str(tmp_path), pipeline=pipeline, on_bad_record="skip", test_mode=True)
    bad = str(tmp_path / "train" / "1.jpg")
    _truncate(bad)  # after loading: the loader read its header
    with pytest.raises(UnreadableImageError, match=r"1\.jpg: the image cannot be decoded") as e:
        datasets["error"][0]
    assert "on_bad_record='skip'" in str(e.value)
    assert datasets["skip"][0]["img_path"].endswith("2.jpg")  # another image in its place
    assert datasets["skip"].skipped_images >= 1
    assert any("Skipped" in m and bad in m for m in warnings_logged)
    with pytest.raises(UnreadableImageError, match="every test image is scored"):
        tested[0]
    os.remove(bad)
    os.mkfifo(bad)  # a FIFO would block the image reader forever
    with pytest.raises(UnreadableImageError, match=r"is a FIFO"):
        datasets["error"][0]
