"""The TT100K loader: official layout to Detectron2 dicts, and every bad-input case."""

import json
import logging
import os

import numpy as np
import pytest
from common import call_guarding_fifo
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.structures import BoxMode
from PIL import Image
from tt100k_trees import BAD_CASES, write_tt100k
from tt100k_trees import box as _box
from tt100k_trees import record as _rec

from featsr_d2.core.tt100k import load_annotations
from featsr_d2.core.tt100k_categories import TYPE45
from featsr_d2.data import TT100KFormatError, load_tt100k_json, register_tt100k_instances
from featsr_d2.data.tt100k import set_bad_record_policy


@pytest.fixture
def good_tree(tmp_path):
    imgs = {
        "10": _rec(
            10,
            [
                {"category": "pl40", "bbox": _box(1.5, 2.0, 20.25, 30.0), "ellipse_org": [[1, 2]]},
                {"category": "i2", "bbox": _box(30, 10, 40, 20)},
                {"category": "zz_other", "bbox": _box(5, 5, 9, 9)},
            ],
        ),
        "11": _rec(11, []),
        "12": _rec(12, [{"category": "i2", "bbox": _box(0, 0, 64, 48)}]),
    }
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=[10, 11])
    return str(tmp_path), json_file, ids_file


def test_loads_official_layout_as_xyxy_abs(good_tree):
    root, json_file, ids_file = good_tree
    dicts = load_tt100k_json(json_file, ids_file, root)
    assert [d["image_id"] for d in dicts] == [10, 11]  # only the split's ids, in file order
    first = dicts[0]
    assert first["file_name"] == os.path.join(root, "train/10.jpg")
    assert (first["width"], first["height"]) == (64, 48)
    anns = first["annotations"]
    # zz_other is a known type outside type45: left out.
    assert [a["category_id"] for a in anns] == [TYPE45.index("pl40"), TYPE45.index("i2")]
    assert anns[0]["bbox"] == [1.5, 2.0, 20.25, 30.0]
    assert all(a["bbox_mode"] == BoxMode.XYXY_ABS for a in anns)
    assert all(isinstance(v, float) for a in anns for v in a["bbox"])
    assert dicts[1]["annotations"] == []


def test_class_set_all_keeps_every_type(good_tree):
    root, json_file, ids_file = good_tree
    dicts = load_tt100k_json(json_file, ids_file, root, class_set="all")
    assert [a["category_id"] for a in dicts[0]["annotations"]] == [0, 1, 2]


def test_border_overhang_within_tolerance_is_clipped(tmp_path):
    imgs = {"1": _rec(1, [{"category": "i2", "bbox": _box(-0.5, 3, 64.8, 48.0)}])}
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=[1])
    (d,) = load_tt100k_json(json_file, ids_file, str(tmp_path))
    assert d["annotations"][0]["bbox"] == [0.0, 3.0, 64.0, 48.0]


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_record_raises_naming_file_and_record(tmp_path, case):
    imgs, ids, fragments, _ = BAD_CASES[case]
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=ids)
    if case == "missing image":
        os.remove(os.path.join(str(tmp_path), "train/nope.jpg"))
    with pytest.raises(TT100KFormatError) as e:
        load_tt100k_json(json_file, ids_file, str(tmp_path))
    msg = str(e.value)
    for fragment in fragments:
        assert fragment in msg, (fragment, msg)
    assert "ON_BAD_RECORD" in msg  # names the fix


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_record_skip_is_counted_and_logged(tmp_path, case, caplog):
    imgs, ids, _, kept = BAD_CASES[case]
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=ids)
    if case == "missing image":
        os.remove(os.path.join(str(tmp_path), "train/nope.jpg"))
    with caplog.at_level(logging.WARNING, logger="featsr_d2.data.tt100k"):
        dicts = load_tt100k_json(json_file, ids_file, str(tmp_path), on_bad_record="skip")
    assert len(dicts) == kept
    assert sum(len(d["annotations"]) for d in dicts) == 0
    assert f"1 {case}" in caplog.text


def test_unreadable_image(tmp_path):
    json_file, ids_file = write_tt100k(str(tmp_path), {"1": _rec(1, [])}, train_ids=[1])
    with open(os.path.join(str(tmp_path), "train/1.jpg"), "wb") as f:
        f.write(b"not a jpeg")
    with pytest.raises(TT100KFormatError, match=r"train/1.jpg cannot be read"):
        load_tt100k_json(json_file, ids_file, str(tmp_path))


def test_malformed_json_names_file_and_position(tmp_path):
    json_file, ids_file = write_tt100k(str(tmp_path), {"1": _rec(1, [])}, train_ids=[1])
    with open(json_file, "w") as f:
        f.write('{"types": [], "imgs": {"1": ')
    with pytest.raises(TT100KFormatError, match=r"annotations.json: not valid JSON .*line 1"):
        load_tt100k_json(json_file, ids_file, str(tmp_path))


def test_wrong_top_level_and_missing_files(tmp_path):
    json_file, ids_file = write_tt100k(str(tmp_path), {"1": _rec(1, [])}, train_ids=[1])
    with open(json_file, "w") as f:
        json.dump([1, 2], f)
    with pytest.raises(TT100KFormatError, match="'imgs' mapping"):
        load_tt100k_json(json_file, ids_file, str(tmp_path))
    with pytest.raises(TT100KFormatError, match="annotation file not found"):
        load_tt100k_json(str(tmp_path / "none.json"), ids_file, str(tmp_path))
    write_tt100k(str(tmp_path), {"1": _rec(1, [])}, train_ids=[1])
    with pytest.raises(TT100KFormatError, match="split file not found"):
        load_tt100k_json(json_file, str(tmp_path / "test" / "ids.txt"), str(tmp_path))


def test_invalid_policy_and_class_set(good_tree):
    root, json_file, ids_file = good_tree
    with pytest.raises(ValueError, match="on_bad_record"):
        load_tt100k_json(json_file, ids_file, root, on_bad_record="ignore")
    with pytest.raises(ValueError, match="class_set"):
        load_tt100k_json(json_file, ids_file, root, class_set="type99")


def test_register_reads_policy_from_metadata(tmp_path):
    imgs = {"1": _rec(1, [{"category": "i2", "bbox": _box(10, 10, 10, 20)}])}
    write_tt100k(str(tmp_path), imgs, train_ids=[1])
    names = ["_test_tt100k_policy_error", "_test_tt100k_policy_skip", "_test_tt100k_all"]
    try:
        register_tt100k_instances(names[0], str(tmp_path), "train")
        register_tt100k_instances(names[1], str(tmp_path), "train")
        register_tt100k_instances(names[2], str(tmp_path), "train", class_set="all")
        meta = MetadataCatalog.get(names[0])
        assert meta.evaluator_type == "tt100k"
        assert meta.thing_classes == list(TYPE45)
        assert meta.json_file == os.path.join(str(tmp_path), "annotations.json")
        with pytest.raises(TT100KFormatError):
            DatasetCatalog.get(names[0])
        set_bad_record_policy([names[1], "coco_2017_val"], "skip")
        assert len(DatasetCatalog.get(names[1])) == 1
        with pytest.raises(ValueError, match="already uses"):
            set_bad_record_policy([names[1]], "error")
        assert not hasattr(MetadataCatalog.get(names[2]), "thing_classes")
        set_bad_record_policy([names[2]], "skip")
        DatasetCatalog.get(names[2])
        assert MetadataCatalog.get(names[2]).thing_classes == ["pl40", "i2", "zz_other"]
    finally:
        for name in names:
            DatasetCatalog.remove(name)
            MetadataCatalog.remove(name)


def test_builtin_names_resolve_under_detectron2_datasets():
    for name in ("tt100k_2016_train", "tt100k_2016_test", "tt100k_synth_train"):
        meta = MetadataCatalog.get(name)
        assert meta.evaluator_type == "tt100k"
        root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
        folder = "tt100k_synth" if "synth" in name else "tt100k"
        assert meta.json_file == os.path.join(root, folder, "annotations.json")
        assert meta.ids_file == os.path.join(root, folder, name.rsplit("_", 1)[1], "ids.txt")
    assert MetadataCatalog.get("tt100k_2016_all_test").class_set == "all"


# Values the evaluation protocol refuses must not pass the loader either (one validator): a bool or
# a string coordinate, NaN, a category that is a list, "objects": null.
STRICT_CASES = {
    "bool coordinate": ({"category": "i2", "bbox": _box(True, 1, 20, 20)}, "bbox['xmin']"),
    "string coordinate": ({"category": "i2", "bbox": _box(1, "268.91", 20, 20)}, "bbox['ymin']"),
    "nan coordinate": ({"category": "i2", "bbox": _box(1, 1, float("nan"), 20)}, "bbox['xmax']"),
    "list category": ({"category": ["i2"], "bbox": _box(1, 1, 20, 20)}, "'category' must be"),
}


@pytest.mark.parametrize("case", sorted(STRICT_CASES))
def test_one_validator_refuses_what_evaluation_refuses(tmp_path, case, caplog):
    obj, fragment = STRICT_CASES[case]
    imgs = {"1": _rec(1, [obj, {"category": "pl40", "bbox": _box(2, 2, 9, 9)}])}
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=[1])
    with pytest.raises(TT100KFormatError, match=r"imgs\['1'\]\.objects\[0\]") as e:
        load_tt100k_json(json_file, ids_file, str(tmp_path))
    assert fragment in str(e.value) and "ON_BAD_RECORD" in str(e.value)
    with caplog.at_level(logging.WARNING, logger="featsr_d2.data.tt100k"):
        (d,) = load_tt100k_json(json_file, ids_file, str(tmp_path), on_bad_record="skip")
    assert [a["category_id"] for a in d["annotations"]] == [TYPE45.index("pl40")]
    assert "1 malformed object" in caplog.text


def test_objects_not_a_list_is_a_bad_image_record(tmp_path, caplog):
    imgs = {"1": {"path": "train/1.jpg", "id": 1, "objects": None}, "2": _rec(2, [])}
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=[1, 2])
    with pytest.raises(TT100KFormatError, match=r"imgs\['1'\]: 'objects' must be a list"):
        load_tt100k_json(json_file, ids_file, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="featsr_d2.data.tt100k"):
        dicts = load_tt100k_json(json_file, ids_file, str(tmp_path), on_bad_record="skip")
    assert [d["image_id"] for d in dicts] == [2]
    assert "1 malformed image record" in caplog.text


def test_missing_objects_is_a_bad_image_record_as_in_the_protocol(tmp_path, caplog):
    """One reader, one strictness: a record without 'objects', refused by the protocol's
    load_annotations, is a malformed image record for the loader too (not an empty image)."""
    imgs = {"1": {"path": "train/1.jpg", "id": 1}, "2": _rec(2, [])}
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=[1, 2])
    with pytest.raises(TT100KFormatError, match=r"imgs\['1'\]: missing key 'objects'"):
        load_annotations(json_file)
    with pytest.raises(TT100KFormatError, match=r"imgs\['1'\]: missing key 'objects'"):
        load_tt100k_json(json_file, ids_file, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="featsr_d2.data.tt100k"):
        dicts = load_tt100k_json(json_file, ids_file, str(tmp_path), on_bad_record="skip")
    assert [d["image_id"] for d in dicts] == [2]
    assert "1 malformed image record" in caplog.text


def test_duplicate_id_in_split_file(tmp_path, caplog):
    imgs = {"1": _rec(1, [{"category": "i2", "bbox": _box(1, 1, 20, 20)}]), "2": _rec(2, [])}
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=[1, 2, 1])
    with pytest.raises(
        TT100KFormatError, match=r"ids\.txt:3: image id 1 is already listed on line 1"
    ):
        load_tt100k_json(json_file, ids_file, str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="featsr_d2.data.tt100k"):
        dicts = load_tt100k_json(json_file, ids_file, str(tmp_path), on_bad_record="skip")
    assert [d["image_id"] for d in dicts] == [1, 2]
    assert "1 duplicate image id" in caplog.text


def test_unreadable_text_names_the_file(tmp_path):
    json_file, ids_file = write_tt100k(str(tmp_path), {"1": _rec(1, [])}, train_ids=[1])
    with open(ids_file, "wb") as f:
        f.write(b"1\n\xff\xfe2\n")
    with pytest.raises(TT100KFormatError, match=r"ids\.txt:2: not UTF-8"):
        load_tt100k_json(json_file, ids_file, str(tmp_path))
    write_tt100k(str(tmp_path), {"1": _rec(1, [])}, train_ids=[1])
    with open(json_file, "rb") as f:
        good = f.read()
    with open(json_file, "wb") as f:
        f.write(good.replace(b'"types"', b'"t\xe9pes"'))
    with pytest.raises(
        TT100KFormatError, match=r"annotations\.json: not UTF-8 text \(byte \d+, line 1\)"
    ):
        load_tt100k_json(json_file, ids_file, str(tmp_path))
    with open(json_file, "w") as f:
        f.write('{"types": [], "imgs": {}, "n": ' + "7" * 5000 + "}")
    with pytest.raises(
        TT100KFormatError, match=r"annotations\.json: the JSON holds a value .*digits"
    ):
        load_tt100k_json(json_file, ids_file, str(tmp_path))


def test_image_id_round_trips_as_a_string(tmp_path):
    long_id = "9" * 5000
    imgs = {"007": _rec("007", []), long_id: _rec(1, []), "12": _rec(12, [])}
    imgs[long_id]["path"] = "train/long.jpg"
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=["007", long_id, 12])
    dicts = load_tt100k_json(json_file, ids_file, str(tmp_path))
    assert [str(d["image_id"]) for d in dicts] == ["007", long_id, "12"]
    assert dicts[2]["image_id"] == 12


def test_repeated_type_is_refused(tmp_path):
    json_file, ids_file = write_tt100k(
        str(tmp_path), {"1": _rec(1, [])}, train_ids=[1], types=("pl40", "i2", "pl40")
    )
    with pytest.raises(TT100KFormatError, match=r"'types' lists \['pl40'\] more than once"):
        load_tt100k_json(json_file, ids_file, str(tmp_path), class_set="all")


def test_protocol_reader_checks_types_as_the_loader_does(tmp_path):
    """The evaluation's ground truth reader refuses a repeated or non-string type too."""
    json_file, _ = write_tt100k(
        str(tmp_path), {"1": _rec(1, [])}, train_ids=[1], types=("pl40", "i2", "pl40")
    )
    with pytest.raises(TT100KFormatError, match=r"'types' lists \['pl40'\] more than once"):
        load_annotations(json_file)
    with open(json_file, "w") as f:
        json.dump({"types": "pl40", "imgs": {}}, f)
    with pytest.raises(TT100KFormatError, match="'types' must be a list of category names"):
        load_annotations(json_file)


def test_an_image_path_that_is_a_fifo_is_a_named_bad_record(tmp_path, caplog):
    """Issue 22.8: only regular files are opened; a FIFO is a bad image record, named, at once."""
    imgs = {"10": _rec(10, []), "11": _rec(11, [])}
    json_file, ids_file = write_tt100k(str(tmp_path), {"10": imgs["10"]}, train_ids=[10, 11])
    fifo = str(tmp_path / "train" / "11.jpg")
    os.mkfifo(fifo)
    json_file, ids_file = write_tt100k(str(tmp_path), imgs, train_ids=[10, 11])
    with pytest.raises(TT100KFormatError, match=rf"image id 11: {fifo} is a FIFO \(named pipe\)"):
        call_guarding_fifo(lambda: load_tt100k_json(json_file, ids_file, str(tmp_path)), fifo)
    with caplog.at_level(logging.WARNING, logger="featsr_d2.data.tt100k"):
        dicts = call_guarding_fifo(
            lambda: load_tt100k_json(json_file, ids_file, str(tmp_path), on_bad_record="skip"),
            fifo,
        )
    assert [d["image_id"] for d in dicts] == [10]
    assert "1 not a regular file" in caplog.text


def _exif_rotated_jpeg(path, stored_wh=(64, 48), orientation=6):
    """A JPEG stored ``stored_wh`` whose EXIF orientation rotates it by 90 degrees."""
    image = Image.fromarray(np.zeros((stored_wh[1], stored_wh[0], 3), np.uint8))
    exif = Image.Exif()
    exif[274] = orientation
    image.save(path, exif=exif.tobytes())


def test_an_exif_rotated_image_has_its_displayed_size_and_maps(tmp_path):
    """Issue 22.7: the size is the decoded one (EXIF applied, as Detectron2 reads the image), so
    the mapper gets what the dataset says; boxes are in the displayed (portrait) image."""
    from detectron2.data import DatasetMapper

    from featsr_d2.config import get_featsr_cfg
    from featsr_d2.data.checked_mapper import CheckedMapper

    os.makedirs(tmp_path / "train")
    _exif_rotated_jpeg(tmp_path / "train" / "10.jpg")  # stored 64x48, displayed 48x64
    portrait_box = {"category": "pl40", "bbox": _box(4, 40, 40, 62)}  # y beyond 48: portrait
    json_file, ids_file = write_tt100k(str(tmp_path), {"10": _rec(10, [portrait_box])},
                                       train_ids=[10])  # fmt: skip
    (d,) = load_tt100k_json(json_file, ids_file, str(tmp_path))
    assert (d["width"], d["height"]) == (48, 64) and len(d["annotations"]) == 1
    cfg = get_featsr_cfg(None, ["INPUT.MIN_SIZE_TRAIN", (64,), "INPUT.MAX_SIZE_TRAIN", 64,
                                "INPUT.RANDOM_FLIP", "none"])  # fmt: skip
    for policy in ("error", "skip"):
        out = CheckedMapper(DatasetMapper(cfg, is_train=True), policy)(dict(d))
        assert tuple(out["image"].shape) == (3, 64, 48)
        assert out["instances"].gt_boxes.tensor.tolist() == [[4.0, 40.0, 40.0, 62.0]]
