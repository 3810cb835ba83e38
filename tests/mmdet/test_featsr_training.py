"""FeatSR's MMDetection detector trains and predicts on CPU from the shipped R50-FPN, R50-C4 and
demo MobileNetV2-FPN configs (tiny widths, 96 px images, one without ground truth): one training
step through the configs' own optimizer wrappers moves exactly what the stage trains, for every
supervision mode; at its start (G the identity, the small predictor a copy of the large one)
FeatSR predicts what the stage-1 detector predicts, and with ``max_small_per_image=0`` bit for
bit."""

import pytest
import torch
from featsr_mmdet import LAYOUTS, build, data, featsr_model, load_config, stage1_state, tiny

pytestmark = pytest.mark.usefixtures("one_thread")

# What each stage trains (state-dict prefixes); everything else must stay as loaded. C4's large
# and small predictors include res5 (shared_head, featsr.small_head).
TRAINED = {
    2: ("roi_head.featsr.generator.", "roi_head.featsr.discriminator.", "roi_head.featsr.small_"),
    3: ("roi_head.bbox_head.", "roi_head.featsr.small_"),
}
C4_TRAINED = {2: ("roi_head.featsr.small_head.",), 3: ("roi_head.shared_head.",)}


def _step(model, cfg, batch) -> tuple[dict, set[str]]:
    """One training step; the log and the state-dict keys whose values changed."""
    from mmengine.optim import build_optim_wrapper

    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    log = model.train_step(batch, wrapper)
    after = model.state_dict()
    return log, {k for k in before if not torch.equal(before[k], after[k])}


def _moved(changed: set[str], prefix: str) -> bool:
    return any(k.startswith(prefix) for k in changed)


@pytest.mark.parametrize("stage", [2, 3])
@pytest.mark.parametrize("layout", ["R50-FPN", "R50-C4", "MNV2-FPN"])
def test_a_training_step_moves_only_what_the_stage_trains_and_the_model_predicts(layout, stage):
    model, cfg = featsr_model(layout, stage)
    log, changed = _step(model, cfg, data(empty_last=True))
    assert all(torch.isfinite(v).all() for v in log.values()), log
    trained = TRAINED[stage] + (C4_TRAINED[stage] if layout == "R50-C4" else ())
    assert all(k.startswith(trained) for k in changed), sorted(changed)
    for prefix in trained:
        assert _moved(changed, prefix), (prefix, sorted(changed))
    if stage == 2:
        assert {"loss_sr_content", "loss_sr_adversarial", "loss_discriminator"} <= set(log)
        assert {"loss_cls_small", "loss_bbox_small"} <= set(log)
        assert "loss_cls" not in log  # the large predictor is not run
    else:
        assert {"loss_cls", "loss_bbox", "loss_cls_small", "loss_bbox_small"} <= set(log)
        assert not any(k.startswith("loss_sr") for k in log)
    # The frozen trunk stays in eval mode while training: its statistics do not move.
    assert not model.backbone.training and not model.rpn_head.training
    # And it predicts (the second image has no ground truth, which inference ignores).
    model.roi_head.test_cfg.score_thr = 0.0
    predictions = _predictions(model, data(empty_last=True))
    assert len(predictions) == 2
    for boxes, scores, labels in predictions:
        assert len(boxes) > 0 and torch.isfinite(boxes).all() and torch.isfinite(scores).all()
        assert labels.max() < model.roi_head.bbox_head.num_classes


@pytest.mark.parametrize(
    "supervision, trained, losses",
    [
        ("extractor", ("generator", "discriminator", "small_predictor"), {"content", "adv"}),
        ("naive", ("generator", "discriminator", "small_predictor"), {"content", "adv"}),
        ("none", ("generator", "discriminator", "small_predictor"), {"adv"}),
        ("detection_only", ("generator", "small_predictor"), set()),
        ("identity", ("small_predictor",), set()),
    ],
)
def test_each_supervision_trains_its_row_of_the_table(supervision, trained, losses):
    model, cfg = featsr_model("R50-FPN", 2, supervision=supervision)
    log, changed = _step(model, cfg, data())
    moved = {p for p in ("generator", "discriminator", "small_predictor") if
             _moved(changed, f"roi_head.featsr.{p}.")}  # fmt: skip
    assert moved == set(trained), sorted(changed)
    assert ("loss_sr_content" in log) == ("content" in losses)
    assert ("loss_sr_adversarial" in log) == ("adv" in losses)
    assert ("loss_discriminator" in log) == ("adv" in losses)
    assert all(k.startswith("roi_head.featsr.") for k in changed)


def _predictions(model, batch):
    model.eval()
    with torch.no_grad():
        results = model.test_step(batch)
    return [(r.pred_instances.bboxes, r.pred_instances.scores, r.pred_instances.labels)
            for r in results]  # fmt: skip


@pytest.mark.parametrize("layout", ["R50-FPN", "R50-C4"])
def test_at_its_start_featsr_predicts_what_the_base_detector_predicts(layout):
    base_cfg = tiny(load_config(LAYOUTS[layout][0]))
    base_cfg.model.test_cfg.rcnn.score_thr = 0.0
    base = build(base_cfg)
    base.load_state_dict(stage1_state(layout))
    batch = data(empty_last=True)
    expected = _predictions(base, batch)
    for cap in (0, -1):
        model, _ = featsr_model(layout, 2, max_small_per_image=cap)
        model.roi_head.test_cfg.score_thr = 0.0
        got = _predictions(model, batch)
        assert len(got) == 2 and len(got[0][0]) > 0
        for (bx, sx, lx), (by, sy, ly) in zip(got, expected):
            if cap == 0:  # the base detector, bit for bit
                assert torch.equal(bx, by) and torch.equal(sx, sy) and torch.equal(lx, ly)
            else:  # G is the identity and the small predictor the large one: float rounding
                torch.testing.assert_close(sx, sy, rtol=1e-4, atol=1e-5)
                torch.testing.assert_close(bx, by, rtol=1e-4, atol=1e-3)
                assert torch.equal(lx, ly)


def test_small_proposals_take_the_small_path_at_inference():
    """Moving the small predictor changes the scores of small detections only (no cap)."""
    model, _ = featsr_model("R50-FPN", 3, max_small_per_image=-1)
    model.roi_head.test_cfg.score_thr = 0.0
    model.roi_head.test_cfg.max_per_img = 1000
    batch = data()
    head = model.roi_head
    model.eval()
    with torch.no_grad():
        x, sub = model.extract_feat_and_sub(model.data_preprocessor(batch)["inputs"])
        proposals = [torch.tensor([[60.0, 58.0, 84.0, 80.0], [8.0, 12.0, 70.0, 76.0]])] * 2
        before, _, _ = head.routed_bbox_forward(x, sub, proposals)
        head.featsr.small_predictor.fc_cls.bias.add_(1.0)
        after, _, _ = head.routed_bbox_forward(x, sub, proposals)
    small = torch.tensor([True, False, True, False])  # sqrt(24 x 22) < 48 <= sqrt(62 x 64)
    assert not torch.allclose(before[small], after[small])
    assert torch.equal(before[~small], after[~small])


def test_the_frozen_rpn_proposes_in_training_as_at_inference(monkeypatch):
    """As Detectron2's eval-mode RPN in stages 2 and 3: test_cfg.rpn, not train_cfg.rpn_proposal,
    and no RPN loss."""
    model, cfg = featsr_model("R50-FPN", 2)
    used = []
    propose = model.rpn_head.predict_by_feat

    def spy(*args, cfg=None, **kwargs):
        used.append(cfg)
        return propose(*args, cfg=cfg, **kwargs)

    monkeypatch.setattr(model.rpn_head, "predict_by_feat", spy)
    model.train_cfg.rpn_proposal.max_per_img = 40  # tells the two apart
    log, _ = _step(model, cfg, data())
    assert used == [model.test_cfg.rpn] and used[0] is model.test_cfg.rpn  # the 1.0x images only
    assert model.test_cfg.rpn.max_per_img != model.train_cfg.rpn_proposal.max_per_img
    assert not any(k.startswith("loss_rpn") for k in log)
