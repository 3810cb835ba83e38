"""The FeatSR study end to end on a tiny set (a few images, a few iterations): every arm and row is
run and evaluated at two schedules, the tables, their JSON, the pictures and the summary are
written, and a rerun resumes."""

import json
import os

import pytest
import torch
from detectron2.modeling import build_model

from featsr_d2.config import get_featsr_cfg
from featsr_d2.engine.featsr_study import (
    StudySettings,
    run_study,
    small_gt_diagnostics,
    target_statistics,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE1 = os.path.join(REPO, "configs", "faster_rcnn_MNV2_FPN_synth.yaml")
STAGE2 = os.path.join(REPO, "configs", "featsr_MNV2_FPN_synth.yaml")
STAGE3 = os.path.join(REPO, "configs", "featsr_MNV2_FPN_synth_stage3.yaml")
pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_opts(tiny_tt100k):
    train_name, test_name, _ = tiny_tt100k
    return [
        "DATASETS.TRAIN", (train_name,), "DATASETS.TEST", (test_name,),
        "MODEL.ROI_HEADS.NUM_CLASSES", 45, "TEST.TT100K.TYPES", "type45",
        "INPUT.MIN_SIZE_TRAIN", (128,), "INPUT.MAX_SIZE_TRAIN", 128,
        "INPUT.MIN_SIZE_TEST", 128, "INPUT.MAX_SIZE_TEST", 128,
        "SOLVER.IMS_PER_BATCH", 2, "MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0,
        "MODEL.FEATSR.SMALL_SIZE", 48,
    ]  # fmt: skip


@pytest.fixture
def stage1_weights(tiny_tt100k, tmp_path):
    """A stage-1 detector of the demo's architecture, randomly initialized."""
    cfg = get_featsr_cfg(STAGE1, [*_tiny_opts(tiny_tt100k), "MODEL.WEIGHTS", ""])
    path = str(tmp_path / "stage1.pth")
    torch.save({"model": build_model(cfg).state_dict()}, path)
    return path


def test_study_runs_every_arm_writes_its_table_and_resumes(tiny_tt100k, tmp_path, stage1_weights):
    out = str(tmp_path / "study")
    arms = ("control", "extractor", "extractor_unaligned", "extractor_rescaled", "naive")
    settings = StudySettings(
        stage2_config=STAGE2,
        stage3_config=STAGE3,
        weights=stage1_weights,
        out_dir=out,
        arms=arms,
        seeds=(0, 1),
        schedules=(1, 2),
        stage2_iters=2,
        stage3_iters=1,
        num_train_images=3,
        caps=(1,),
        sliced=True,
        cost_images=2,
        bootstrap_samples=20,
        opts=_tiny_opts(tiny_tt100k),
    )
    report = run_study(settings)
    for name in ("table.md", "table.json", "difference_from_control.png", "settings.json",
                 "summary.md", "x2/table.md", "x2/table.json"):  # fmt: skip
        assert os.path.getsize(os.path.join(out, name)) > 0, name
    with open(os.path.join(out, "table.json")) as f:
        assert json.load(f) == json.loads(json.dumps(report))
    trained = [*arms, *(f"{a}_x2" for a in arms), "extractor_K1"]
    rows = ("base", "sliced", *trained)
    for row in rows:
        for seed in (0, 1) if row in trained else (0,):
            run_dir = os.path.join(out, "runs", row, f"seed{seed}")
            assert os.path.exists(os.path.join(run_dir, "tt100k_results.json")), run_dir
    for row, iters in (("control", (2, 1)), ("control_x2", (4, 2)), ("naive_x2", (4, 2))):
        with open(os.path.join(out, "runs", row, "seed0", "run.json")) as f:
            run = json.load(f)
        assert (run["stage2_iters"], run["stage3_iters"]) == iters, row
        if row.startswith("control"):
            assert run["generator_change"] == 0.0  # the control's G stays the identity
    with open(os.path.join(out, "runs", "base", "seed0", "run.json")) as f:
        assert 0.0 <= json.load(f)["proposal_recall_small"]["recall"] <= 1.0
    # Each schedule against its own control; base and sliced in both.
    assert set(report["differences"]) == {"base", "sliced", "extractor_K1", *arms[1:]}
    with open(os.path.join(out, "x2", "table.json")) as f:
        x2 = json.load(f)
    assert x2["settings"]["control"] == "control_x2"
    assert set(x2["differences"]) == {"base", "sliced", *(f"{a}_x2" for a in arms[1:])}
    summary = open(os.path.join(out, "summary.md")).read()
    for arm in ("extractor_unaligned", "extractor_rescaled (beyond the paper)", "naive", "sliced"):
        assert f"| {arm} |" in summary, arm
    assert set(report["notes"]["targets"]) == {"naive", "aligned", "unaligned", "rescaled"}
    with open(os.path.join(out, "contrasts.json")) as f:
        contrasts = json.load(f)
    expected = {"extractor - extractor_unaligned", "extractor_rescaled - extractor",
                "naive - extractor"}  # fmt: skip
    expected = {f"{r}{x} - {e}{x}" for r, e in (c.split(" - ") for c in expected)
                for x in ("", "_x2")}  # fmt: skip
    expected |= {f"{a}_x2 - {a}" for a in arms}
    assert set(contrasts) == expected
    assert all(c["verdict"] in ("helps", "hurts", "no effect shown") for c in contrasts.values())
    # The cost switches against the capped arm itself.
    with open(os.path.join(out, "cost_switches", "table.json")) as f:
        switches = json.load(f)
    assert set(switches["differences"]) == {"extractor_K1"}

    # A rerun trains nothing and evaluates nothing again.
    stamps = {
        p: os.path.getmtime(p)
        for p in (os.path.join(out, "runs", r, "seed0", "run.json") for r in rows)
    }
    run_study(settings)
    assert {p: os.path.getmtime(p) for p in stamps} == stamps


def test_target_statistics_of_rescaled_targets(tiny_tt100k, tmp_path, stage1_weights):
    """The rescaled targets have F^1.0's scale per channel over the cache, so on the pairs their
    RMS is near F^1.0's, while their direction (cosines) is the aligned targets' per channel
    scaled; the naive target is F^1.0 itself."""
    from featsr_d2.engine.feature_cache import cache_features, channel_scales

    cfg = get_featsr_cfg(STAGE2, [*_tiny_opts(tiny_tt100k), "MODEL.WEIGHTS", ""])
    torch.manual_seed(0)
    model = build_model(cfg).eval()
    from detectron2.data import DatasetCatalog, DatasetMapper

    mapper = DatasetMapper(cfg, is_train=True)
    dicts = [d for d in DatasetCatalog.get(cfg.DATASETS.TRAIN[0]) if d["annotations"]][:4]
    cache = cache_features(model, [mapper(dict(d)) for d in dicts], str(tmp_path / "cache"),
                           with_pairs=True, placements=("aligned", "unaligned"),
                           dtype=torch.float32)  # fmt: skip
    scales = channel_scales(cache)
    stats = target_statistics(model, cache, scales)
    assert set(stats) == {"naive", "aligned", "unaligned", "rescaled"}
    assert stats["naive"]["cos_to_plain"] == pytest.approx(1.0, abs=1e-5)
    assert stats["naive"]["rms_over_plain"] == pytest.approx(1.0, abs=1e-5)
    assert stats["aligned"]["pairs"] == stats["naive"]["pairs"] > 0
    assert stats["aligned"]["cos_to_lr"] != pytest.approx(stats["unaligned"]["cos_to_lr"])
    assert all(s.min() > 0 and torch.isfinite(s).all() for s in scales.values())


def test_a_study_without_extractor_arms_caches_no_targets(tiny_tt100k, tmp_path, stage1_weights):
    """The demo's shape: the control and naive supervision need no SR target extractor, so the
    cache holds none (and the naive arm trains)."""
    from featsr_d2.engine.feature_cache import load_feature_cache

    out = str(tmp_path / "study")
    settings = StudySettings(
        stage2_config=STAGE2, stage3_config=STAGE3, weights=stage1_weights, out_dir=out,
        arms=("control", "naive"), seeds=(0,), stage2_iters=2, stage3_iters=1,
        num_train_images=3, sliced=False, cost_images=0, bootstrap_samples=20,
        opts=_tiny_opts(tiny_tt100k),
    )  # fmt: skip
    report = run_study(settings)
    cache = load_feature_cache(os.path.join(out, "cache", "train"))
    assert all(c.sr_targets == {} and c.lr_features for c in cache)
    assert set(report["notes"]["targets"]) == {"naive"}
    assert report["differences"]["naive"]["verdict"] in ("helps", "hurts", "no effect shown")


def test_study_refuses_what_it_cannot_run(tiny_tt100k, tmp_path, stage1_weights):
    base = dict(stage2_config=STAGE2, stage3_config=STAGE3, out_dir=str(tmp_path / "s"))
    with pytest.raises(FileNotFoundError, match="train the base detector first"):
        run_study(StudySettings(weights=str(tmp_path / "missing.pth"), **base))
    with pytest.raises(ValueError, match="unknown arm"):
        run_study(StudySettings(weights=stage1_weights, arms=("control", "sr"), **base))
    with pytest.raises(ValueError, match="keep it among the arms"):
        run_study(StudySettings(weights=stage1_weights, arms=("extractor",), **base))
    flip = [*_tiny_opts(tiny_tt100k), "INPUT.RANDOM_FLIP", "horizontal"]
    with pytest.raises(ValueError, match="without augmentation"):
        run_study(StudySettings(weights=stage1_weights, opts=flip, **base))


def test_small_gt_diagnostics_count_only_small_ground_truth(tiny_tt100k, stage1_weights):
    from featsr_d2.engine.feature_cache import CachedImage

    cfg = get_featsr_cfg(STAGE2, [*_tiny_opts(tiny_tt100k), "MODEL.WEIGHTS", ""])
    model = build_model(cfg)
    shape = {k: s for k, s in model.backbone.output_shape().items()}
    features = {
        k: torch.randn(1, s.channels, 128 // s.stride, 128 // s.stride) for k, s in shape.items()
    }
    image = CachedImage(
        image_id=1, height=128, width=128, image_size=(128, 128), features=features,
        lr_features=None, sr_targets=None, proposal_boxes=torch.zeros(0, 4),
        objectness_logits=torch.zeros(0),
        gt_boxes=torch.tensor([[0.0, 0.0, 20.0, 31.0], [0.0, 0.0, 40.0, 10.0]]),
        gt_classes=torch.tensor([3, 4]),
    )  # fmt: skip
    out = small_gt_diagnostics(model, [image], small_path=True)
    assert out["total"] == [1]  # the long side: 31 is small, 40 is not
    assert out["correct"][0] in (0, 1) and out["generator_change"] == 0.0
