"""The synthetic TT100K writer: output format, determinism, categories, overwrite, CLI."""

import filecmp
import json
import os

import numpy as np
import pytest
from PIL import Image

from featsr_d2.core.synthetic import generate_synthetic_tt100k, writer
from featsr_d2.core.synthetic.__main__ import main as cli_main
from featsr_d2.core.synthetic.layout import sample_layout
from featsr_d2.core.synthetic.writer import MARKER
from featsr_d2.core.tt100k_categories import TYPE45

SIZE = 96
KW = {"num_train": 5, "num_test": 3, "image_size": SIZE, "progress": False}


def _generate(root, seed=1, workers=1, **kw):
    return generate_synthetic_tt100k(str(root), **{**KW, **kw}, seed=seed, workers=workers)


def _files(root):
    out = []
    for d, _, names in os.walk(root):
        out += [os.path.relpath(os.path.join(d, n), root) for n in names]
    return sorted(out)


def _same_tree(a, b):
    files = _files(a)
    assert files == _files(b)
    return all(filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False) for f in files)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth_a")
    summary = _generate(root)
    return root, summary


def test_layout_and_annotation_format(dataset):
    root, summary = dataset
    with open(root / "annotations.json") as f:
        ann = json.load(f)
    assert set(ann) == {"types", "imgs"}
    assert ann["types"] == list(TYPE45)
    ids = {s: (root / s / "ids.txt").read_text().split() for s in ("train", "test")}
    assert len(ids["train"]) == KW["num_train"] and len(ids["test"]) == KW["num_test"]
    assert not set(ids["train"]) & set(ids["test"])
    assert set(ids["train"]) | set(ids["test"]) == set(ann["imgs"])
    num_objects = 0
    for split, split_ids in ids.items():
        for key in split_ids:
            entry = ann["imgs"][key]
            assert set(entry) == {"path", "id", "objects"}
            assert isinstance(entry["id"], int) and str(entry["id"]) == key
            assert entry["path"] == f"{split}/{key}.jpg"
            with Image.open(root / entry["path"]) as im:
                assert im.format == "JPEG" and im.size == (SIZE, SIZE) and im.mode == "RGB"
            for obj in entry["objects"]:
                num_objects += 1
                assert obj["category"] in ann["types"]
                b = obj["bbox"]
                assert set(b) == {"xmin", "ymin", "xmax", "ymax"}
                assert all(isinstance(v, float) for v in b.values())
                assert 0.0 <= b["xmin"] < b["xmax"] <= SIZE and 0.0 <= b["ymin"] < b["ymax"] <= SIZE
                shape = [k for k in obj if k in ("ellipse_org", "polygon")]
                assert len(shape) == 1 and len(obj) == 3
                pts = np.asarray(obj[shape[0]], dtype=float)
                assert pts.ndim == 2 and pts.shape[1] == 2 and len(pts) >= 3
                assert (pts >= 0).all() and (pts <= SIZE).all()
    assert num_objects == summary["num_objects"] == sum(summary["per_class"].values())
    assert sum(summary["per_size"].values()) == num_objects
    assert summary["num_images"] == {"train": KW["num_train"], "test": KW["num_test"]}
    assert not os.path.exists(root / "annotations.json.tmp")


def test_boxes_are_tight_around_the_rendered_signs(dataset):
    """Annotation boxes come from the warped sign masks; they must match the sampled geometry."""
    root, _ = dataset
    ann = json.loads((root / "annotations.json").read_text())
    checked = 0
    for index, key in enumerate(sorted(ann["imgs"], key=int)):
        layout = sample_layout(np.random.default_rng([1, index]), SIZE, TYPE45)
        objects = ann["imgs"][key]["objects"]
        assert [p.category for p in layout] == [o["category"] for o in objects]
        for p, o in zip(layout, objects):
            b = o["bbox"]
            got = np.array([b["xmin"], b["ymin"], b["xmax"], b["ymax"]])
            np.testing.assert_allclose(got, np.array(p.box), atol=1.0)
            checked += 1
    assert checked > 0


def test_same_seed_same_bytes_other_seed_differs(dataset, tmp_path):
    root, _ = dataset
    _generate(tmp_path / "again")
    assert _same_tree(root, tmp_path / "again")
    _generate(tmp_path / "other", seed=2)
    a = (root / "annotations.json").read_bytes()
    assert a != (tmp_path / "other" / "annotations.json").read_bytes()
    assert (root / "train" / "10000.jpg").read_bytes() != (
        tmp_path / "other" / "train" / "10000.jpg"
    ).read_bytes()


def test_output_does_not_depend_on_worker_count(dataset, tmp_path):
    root, _ = dataset
    _generate(tmp_path / "w2", workers=2)
    assert _same_tree(root, tmp_path / "w2")


def test_categories_argument(tmp_path):
    summary = _generate(tmp_path / "two", categories="pl40, pne", num_train=3, num_test=1)
    ann = json.loads((tmp_path / "two" / "annotations.json").read_text())
    assert ann["types"] == ["pl40", "pne"]
    assert set(summary["per_class"]) == {"pl40", "pne"}
    for bad in ("all", "pl40,nosuchsign", ""):
        with pytest.raises(ValueError):
            writer.resolve_categories(bad)


def test_refuses_non_empty_dir_unless_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        _generate(out, num_train=1, num_test=1)
    assert _files(out) == ["notes.txt"]
    args = ["--out", str(out), "--num-train", "1", "--num-test", "1", "--no-progress"]
    assert cli_main(args) == 2
    _generate(out, num_train=2, num_test=1, overwrite=True)
    assert (out / "notes.txt").read_text() == "keep me"
    _generate(out, num_train=1, num_test=1, overwrite=True)  # replaces the earlier images
    assert len(os.listdir(out / "train")) == 2  # 1 image + ids.txt


def test_crash_leaves_no_annotations(tmp_path, monkeypatch):
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    real = writer.compose_image
    monkeypatch.setattr(writer, "compose_image", failing)
    with pytest.raises(RuntimeError, match="boom"):
        _generate(tmp_path / "crash")
    assert len(calls) == 3
    assert not (tmp_path / "crash" / "annotations.json").exists()
    assert not (tmp_path / "crash" / "annotations.json.tmp").exists()


def test_cli_prints_summary(tmp_path, capsys):
    args = ["--out", str(tmp_path / "cli"), "--num-train", "2", "--num-test", "1",
            "--image-size", "64", "--seed", "3", "--workers", "1", "--no-progress"]  # fmt: skip
    assert cli_main(args) == 0
    text = capsys.readouterr().out
    assert "2 train + 1 test images" in text and "small [0, 32)" in text and "pl40" in text
    assert sorted(os.listdir(tmp_path / "cli")) == [MARKER, "annotations.json", "test", "train"]


def test_overwrite_deletes_only_what_the_generator_wrote(tmp_path, capsys):
    # A real dataset (no marker): --overwrite refuses and deletes nothing.
    real = tmp_path / "tt100k"
    (real / "train").mkdir(parents=True)
    (real / "train" / "10056.jpg").write_bytes(b"a real photograph")
    (real / "annotations.json").write_text('{"imgs": {}}')
    args = ["--out", str(real), "--num-train", "1", "--num-test", "1", "--no-progress"]
    assert cli_main([*args, "--overwrite"]) == 2
    assert "did not write" in capsys.readouterr().err
    assert _files(real) == ["annotations.json", "train/10056.jpg"]
    # A generated dataset: its own files are replaced, a file added by the user is kept.
    out = tmp_path / "synth"
    _generate(out, num_train=2, num_test=1)
    assert (out / MARKER).is_file()
    (out / "train" / "mine.txt").write_text("keep me")
    _generate(out, num_train=1, num_test=1, overwrite=True)
    names = _files(out)
    assert "train/mine.txt" in names
    assert len([n for n in names if n.endswith(".jpg")]) == 2
    ann = json.loads((out / "annotations.json").read_text())
    assert sorted(ann["imgs"]) == sorted(n.split("/")[1][:-4] for n in names if n.endswith(".jpg"))
    # A tampered marker naming files outside the folder is not obeyed.
    outside = tmp_path / "outside.txt"
    outside.write_text("not yours")
    marker = json.loads((out / MARKER).read_text())
    marker["files"].append("../outside.txt")
    (out / MARKER).write_text(json.dumps(marker))
    _generate(out, num_train=1, num_test=1, overwrite=True)
    assert outside.read_text() == "not yours"


def test_out_naming_a_file_is_a_clear_error(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    assert cli_main(["--out", str(target), "--num-train", "1", "--num-test", "1"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
