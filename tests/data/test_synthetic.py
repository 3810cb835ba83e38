"""The synthetic TT100K generator: output format, determinism, size statistics, sign designs."""

import filecmp
import itertools
import json
import os

import cv2
import numpy as np
import pytest
from PIL import Image

from featsr_d2.data.synthetic import generate_synthetic_tt100k
from featsr_d2.data.synthetic import generator as gen
from featsr_d2.data.synthetic.__main__ import main as cli_main
from featsr_d2.data.synthetic.signs import SIGN_CATEGORIES, get_template, render_sign
from featsr_d2.data.tt100k_categories import SIZE_BINS, TYPE45

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
        layout = gen.sample_layout(np.random.default_rng([1, index]), SIZE, TYPE45)
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


def test_sizes_follow_tt100k_mix():
    rng = np.random.default_rng(0)
    sides, empty, counts = [], 0, []
    num_images = 0
    while len(sides) < 2000:
        layout = gen.sample_layout(rng, 320, TYPE45)
        num_images += 1
        empty += not layout
        counts.append(len(layout))
        sides += [p.long_side for p in layout]
    sides = np.array(sides)
    frac = {
        name: np.mean((sides >= SIZE_BINS[name][0]) & (sides < SIZE_BINS[name][1]))
        for name in ("small", "medium", "large")
    }
    assert abs(frac["small"] - 0.42) < 0.035
    assert abs(frac["medium"] - 0.50) < 0.035
    assert abs(frac["large"] - 0.08) < 0.02
    assert sides.min() >= gen.MIN_LONG_SIDE - 1e-6 and sides.max() <= gen.max_long_side(320) + 1e-6
    assert 0.01 < empty / num_images < 0.12
    assert max(counts) <= gen.SIGNS_PER_IMAGE[1]
    assert np.mean([c for c in counts if c]) > 3.0


def test_layout_boxes_inside_and_barely_overlapping():
    rng = np.random.default_rng(5)
    for _ in range(100):
        layout = gen.sample_layout(rng, 128, TYPE45)
        for p in layout:
            assert 0 <= p.box[0] < p.box[2] <= 128 and 0 <= p.box[1] < p.box[3] <= 128
        for p, q in itertools.combinations(layout, 2):
            assert not gen._overlaps(p.box, q.box)


def test_every_category_drawable_and_distinct():
    assert set(TYPE45) <= set(SIGN_CATEGORIES)
    small = {}
    for c in TYPE45:
        t = get_template(c)
        alpha = t.rgba[..., 3]
        assert t.rgba.shape[2] == 4 and t.rgba.dtype == np.uint8
        assert 0.4 < (alpha > 127).mean() < 0.95  # a solid silhouette inside the canvas
        assert alpha[0, 0] == 0 and alpha[-1, -1] == 0
        small[c] = cv2.resize(t.rgba, (64, 64), interpolation=cv2.INTER_AREA).astype(np.float32)
    for a, b in itertools.combinations(TYPE45, 2):
        assert np.abs(small[a] - small[b]).mean() > 1.0, (a, b)
    # Rendering is deterministic and other numbers of the numbered families are drawable too.
    assert np.array_equal(render_sign("pl40", 64).rgba, render_sign("pl40", 64).rgba)
    assert not np.array_equal(render_sign("pl15", 64).rgba, render_sign("pl40", 64).rgba)


def test_categories_argument(tmp_path):
    summary = _generate(tmp_path / "two", categories="pl40, pne", num_train=3, num_test=1)
    ann = json.loads((tmp_path / "two" / "annotations.json").read_text())
    assert ann["types"] == ["pl40", "pne"]
    assert set(summary["per_class"]) == {"pl40", "pne"}
    for bad in ("all", "pl40,nosuchsign", ""):
        with pytest.raises(ValueError):
            gen.resolve_categories(bad)


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

    real = gen.compose_image
    monkeypatch.setattr(gen, "compose_image", failing)
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
    assert sorted(os.listdir(tmp_path / "cli")) == [gen.MARKER, "annotations.json", "test", "train"]


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
    assert (out / gen.MARKER).is_file()
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
    marker = json.loads((out / gen.MARKER).read_text())
    marker["files"].append("../outside.txt")
    (out / gen.MARKER).write_text(json.dumps(marker))
    _generate(out, num_train=1, num_test=1, overwrite=True)
    assert outside.read_text() == "not yours"


def test_out_naming_a_file_is_a_clear_error(tmp_path, capsys):
    target = tmp_path / "a_file"
    target.write_text("x")
    assert cli_main(["--out", str(target), "--num-train", "1", "--num-test", "1"]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
