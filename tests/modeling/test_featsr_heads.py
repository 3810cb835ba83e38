"""FeatSR's ROI heads and meta-architecture in Detectron2 (sections 4.2-4.4); G, D and their losses
alone: tests/core/featsr."""

import copy
import glob
import math
import os

import pytest
import torch
import torchvision
from common import LAYOUTS, tiny_featsr_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.structures import Boxes, Instances
from detectron2.utils.events import EventStorage

from featsr_d2.config import get_featsr_cfg
from featsr_d2.engine import FeatSRTrainer


# ---------------------------------------------------------------------------------------------
def _proposals(image_size=(128, 128)):
    boxes = torch.tensor(
        [[10, 10, 20, 22], [30, 30, 50, 45], [5, 60, 100, 120], [64, 0, 127, 90], [40, 40, 47, 47]],
        dtype=torch.float32,
    )
    inst = Instances(image_size)
    inst.proposal_boxes = Boxes(boxes)
    inst.objectness_logits = torch.zeros(len(boxes))
    return [inst]


def _head_inference(heads, features, proposals):
    instances = heads(None, features, proposals)[0][0]
    order = torch.argsort(instances.scores * 1000 + instances.pred_classes)
    return instances.pred_boxes.tensor[order], instances.scores[order]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_heads_equal_the_base_head_at_initialization_and_route_small_proposals(layout):
    """G starts as the identity and the small predictor as a copy of the large one, so FeatSR's
    head gives the base head's detections; changing the small predictor changes only small RoIs."""
    cfg = tiny_featsr_cfg(layout)
    model = build_model(cfg).eval()
    heads = model.roi_heads
    features = model.backbone(torch.randn(1, 3, 128, 128))
    proposals = _proposals()
    base_heads = copy.deepcopy(heads)
    base_heads.small_size = 0.0  # every proposal large: the base detector's head
    with torch.no_grad():
        ours = _head_inference(heads, features, proposals)
        base = _head_inference(base_heads, features, proposals)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours, base))
        small = torch.sqrt(proposals[0].proposal_boxes.area()) < heads.small_size
        assert small.any() and (~small).any()
        heads.featsr.small_predictor.cls_score.bias.add_(
            torch.linspace(0, 3, heads.num_classes + 1)
        )
        boxes = proposals[0].proposal_boxes
        large_pred = heads._predict_large(features, [boxes[~small]])
        small_pred = heads._predict_small(features, [boxes[small]])
        base_large = base_heads._predict_large(features, [boxes[~small]])
        base_small = base_heads._predict_small(features, [boxes[small]])
        assert torch.allclose(large_pred[0], base_large[0])  # large RoIs: untouched
        assert not torch.allclose(small_pred[0], base_small[0])  # small RoIs: the small predictor


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_stage1_checkpoint_initializes_the_small_predictor(layout):
    stage1 = tiny_featsr_cfg(layout)  # the same architecture as a plain Faster R-CNN
    stage1.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    stage1.MODEL.ROI_HEADS.NAME = {"C4": "Res5ROIHeads", "FPN": "StandardROIHeads"}[layout]
    base = build_model(stage1)
    assert not hasattr(base.roi_heads, "featsr")
    torch.manual_seed(3)
    featsr = build_model(tiny_featsr_cfg(layout))
    result = featsr.load_state_dict(base.state_dict(), strict=False)
    heads = featsr.roi_heads
    new = ("roi_heads.featsr.generator.", "roi_heads.featsr.discriminator.")  # the only new modules
    assert result.missing_keys and all(k.startswith(new) for k in result.missing_keys)
    assert not result.unexpected_keys
    for large_name, small_name in heads._REPLICAS.items():
        large = getattr(heads, large_name.rstrip("."))
        small = heads.get_submodule(small_name.rstrip("."))
        for (name, a), (_, b) in zip(large.state_dict().items(), small.state_dict().items()):
            assert torch.equal(a, b), name
            assert a.data_ptr() != b.data_ptr()  # a copy, not shared
    # A stage-2 checkpoint keeps its own small predictor.
    with torch.no_grad():
        heads.featsr.small_predictor.bbox_pred.weight.add_(1.0)
    state = copy.deepcopy(featsr.state_dict())
    again = build_model(tiny_featsr_cfg(layout))
    again.load_state_dict(state)
    assert torch.equal(
        again.roi_heads.featsr.small_predictor.bbox_pred.weight,
        heads.featsr.small_predictor.bbox_pred.weight,
    )
    assert not torch.equal(
        again.roi_heads.featsr.small_predictor.bbox_pred.weight,
        again.roi_heads.box_predictor.bbox_pred.weight,
    )


def _batch(cfg, train_name, with_empty=True):
    dicts = DatasetCatalog.get(train_name)
    with_gt = next(d for d in dicts if d["annotations"])
    mapper = DatasetMapper(cfg, is_train=True)
    batch = [mapper(copy.deepcopy(with_gt))]
    if with_empty:
        batch.append(mapper(dict(copy.deepcopy(with_gt), annotations=[])))
    return batch


SMALL_LOSSES = {"loss_cls_small", "loss_box_reg_small"}
SR_LOSSES = {"loss_sr_content", "loss_sr_adversarial", "loss_discriminator"}


def heads_needs(model) -> bool:
    """Whether the heads ask the meta-architecture for SR pairs' inputs."""
    return model.roi_heads.needs_lr_features


def _has_grad(module) -> bool:
    return any(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())


@pytest.mark.parametrize(
    "supervision", ["extractor", "naive", "none", "detection_only", "identity"]
)
def test_stage2_training_losses(tiny_tt100k, supervision):
    """Stage 2 trains G, D and the small predictor only; Table 4's "SR without supervision"
    (``none``) drops exactly the content loss and still trains D; ``detection_only`` makes no
    SR pairs and freezes D; the ``identity`` control freezes G and D and makes no pairs."""
    train_name, _, _ = tiny_tt100k
    cfg = tiny_featsr_cfg(
        **{"MODEL.FEATSR.SUPERVISION": supervision, "MODEL.FEATSR.SMALL_SIZE": 48}
    )
    model = build_model(cfg).train()
    with EventStorage():
        losses = model(_batch(cfg, train_name))
    expected = {
        "extractor": SMALL_LOSSES | SR_LOSSES,
        "naive": SMALL_LOSSES | SR_LOSSES,
        "none": SMALL_LOSSES | SR_LOSSES - {"loss_sr_content"},
        "detection_only": SMALL_LOSSES,
        "identity": SMALL_LOSSES,
    }[supervision]
    assert heads_needs(model) == (supervision not in ("detection_only", "identity"))
    assert set(losses) == expected
    assert all(math.isfinite(v.item()) for v in losses.values())
    sum(losses.values()).backward()
    heads = model.roi_heads
    assert all(p.grad is None for p in model.backbone.parameters())  # frozen in stage 2
    assert all(p.grad is None for p in model.proposal_generator.parameters())
    for name in heads._REPLICAS:  # the large predictor: frozen in stage 2
        large = getattr(heads, name.rstrip("."))
        assert all(not p.requires_grad and p.grad is None for p in large.parameters())
        assert not large.training
    assert _has_grad(heads.featsr.small_predictor)
    if supervision == "identity":  # G stays the identity: no gradient, eval mode, frozen
        assert all(
            p.grad is None and not p.requires_grad for p in heads.featsr.generator.parameters()
        )
        assert not heads.featsr.generator.training
    else:
        assert _has_grad(heads.featsr.generator)
    if supervision in ("detection_only", "identity"):
        assert all(p.grad is None for p in heads.featsr.discriminator.parameters())
    else:
        assert _has_grad(heads.featsr.discriminator)


def test_stage3_trains_only_the_predictors_and_the_large_one_on_large_proposals(tiny_tt100k):
    train_name, _, _ = tiny_tt100k
    cfg = tiny_featsr_cfg(**{"MODEL.FEATSR.STAGE": 3, "MODEL.FEATSR.SMALL_SIZE": 48})
    model = build_model(cfg).train()
    heads = model.roi_heads
    seen = []
    large_losses = heads.box_predictor.losses
    heads.box_predictor.losses = lambda pred, props: seen.extend(props) or large_losses(pred, props)
    with EventStorage() as storage:
        losses = model(_batch(cfg, train_name))
    assert set(losses) == {"loss_cls", "loss_box_reg"} | SMALL_LOSSES
    sides = torch.cat([p.proposal_boxes.area().sqrt() for p in seen])
    assert sides.numel() > 0 and bool((sides >= heads.small_size).all())  # large proposals only
    # The two predictors log under distinct event keys.
    logged = storage.latest()
    assert {"fast_rcnn/cls_accuracy", "small/fast_rcnn/cls_accuracy"} <= set(logged)
    sum(losses.values()).backward()
    names = set(name.rstrip(".") for kv in heads._REPLICAS.items() for name in kv)
    trained = {
        next((m for m in names if n.startswith(f"roi_heads.{m}.")), n)
        for n, p in model.named_parameters()
        if p.grad is not None
    }
    assert trained == names
    assert not heads.featsr.generator.training and not heads.featsr.discriminator.training


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_each_loss_reaches_only_its_own_module(tiny_tt100k, layout):
    """The adversarial loss trains G but not D; the discriminator loss trains D but not G."""
    train_name, _, _ = tiny_tt100k
    cfg = tiny_featsr_cfg(layout, **{"MODEL.FEATSR.SMALL_SIZE": 48})
    model = build_model(cfg).train()
    heads = model.roi_heads
    for block in heads.featsr.generator.blocks:  # a generator that is not the identity
        torch.nn.init.normal_(block.conv2.weight, std=0.01)
    with EventStorage():
        losses = model(_batch(cfg, train_name, with_empty=False))
    grads = torch.autograd.grad(
        losses["loss_sr_adversarial"],
        list(heads.featsr.generator.parameters()) + list(heads.featsr.discriminator.parameters()),
        allow_unused=True,
    )
    n_g = len(list(heads.featsr.generator.parameters()))
    assert any(g is not None and g.abs().sum() > 0 for g in grads[:n_g])
    assert all(g is None for g in grads[n_g:])
    grads = torch.autograd.grad(
        losses["loss_discriminator"],
        list(heads.featsr.generator.parameters()) + list(heads.featsr.discriminator.parameters()),
        allow_unused=True,
    )
    assert all(g is None for g in grads[:n_g])
    assert any(g is not None and g.abs().sum() > 0 for g in grads[n_g:])


def test_stage2_training_freezes_base_and_checkpoints_both_optimizers(tiny_tt100k, tmp_path):
    train_name, test_name, _ = tiny_tt100k
    cfg = tiny_featsr_cfg(
        **{
            "MODEL.FEATSR.SMALL_SIZE": 48,
            "DATASETS.TRAIN": (train_name,),
            "DATASETS.TEST": (),
            "DATALOADER.NUM_WORKERS": 0,
            "SOLVER.IMS_PER_BATCH": 2,
            "SOLVER.BASE_LR": 0.001,
            # A random frozen backbone gives huge features; stage 2 normally starts from stage 1.
            "SOLVER.CLIP_GRADIENTS.ENABLED": True,
            "SOLVER.CLIP_GRADIENTS.CLIP_TYPE": "norm",
            "SOLVER.CLIP_GRADIENTS.CLIP_VALUE": 1.0,
            "SOLVER.MAX_ITER": 3,
            "SOLVER.STEPS": (),
            "SOLVER.WARMUP_ITERS": 0,
            "SOLVER.CHECKPOINT_PERIOD": 3,
            "OUTPUT_DIR": str(tmp_path),
        }
    )
    trainer = FeatSRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    model = trainer.model
    frozen_prefixes = ("backbone.", "proposal_generator.", "roi_heads.res5.", "roi_heads.box_p")
    frozen = {k: v.clone() for k, v in model.named_parameters() if k.startswith(frozen_prefixes)}
    assert any(k.startswith("roi_heads.box_predictor.") for k in frozen)
    trained = {
        k: v.clone()
        for k, v in model.named_parameters()
        if ".generator." in k or ".discriminator." in k or "small_predictor" in k
    }
    d_params = {id(p) for p in model.roi_heads.featsr.discriminator.parameters()}
    assert not any(id(p) in d_params for g in trainer.optimizer.param_groups for p in g["params"])
    trainer.train()
    for k, v in model.named_parameters():
        if k in frozen:
            assert torch.equal(v, frozen[k]), k  # bit-identical
    changed = {
        k.split(".")[2]  # roi_heads.featsr.<module>
        for k, v in model.named_parameters()
        if k in trained and not torch.equal(v, trained[k])
    }
    assert {"generator", "discriminator", "small_predictor"} <= changed

    checkpoint = torch.load(tmp_path / "model_final.pth", weights_only=False)
    assert {"optimizer_d", "iteration", "trainer"} <= set(checkpoint)
    assert checkpoint["trainer"]["_trainer"]["optimizer"]["state"]  # the SGD optimizer too
    assert checkpoint["optimizer_d"]["state"]  # Adam moments were saved
    resumed = FeatSRTrainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 3
    saved = checkpoint["optimizer_d"]["state"]
    restored = resumed.optimizer_d.state_dict()["state"]
    assert saved.keys() == restored.keys()
    for k in saved:
        assert torch.equal(saved[k]["exp_avg"], restored[k]["exp_avg"])


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_heads_pool_base_and_sub_in_one_call_equal_to_detectron2_poolers(layout, monkeypatch):
    """FeatSR's pooling (featsr_d2's multi-map, multi-level RoIAlign) equals Detectron2's ROIPooler
    on the base map and on the sub map (C4: res3; FPN: the bottom-up stage before each level's),
    and the base and sub RoI features of a set of proposals come from one call (C4), or one
    call plus one per sub layer when their widths differ (FPN)."""
    from detectron2.modeling.poolers import (
        ROIPooler,
        assign_boxes_to_levels,
        convert_boxes_to_pooler_format,
    )

    from featsr_d2.modeling.roi_heads import featsr_roi_heads

    cfg = tiny_featsr_cfg(layout)
    model = build_model(cfg).eval()
    heads = model.roi_heads
    torch.manual_seed(0)
    features = model.backbone(torch.randn(2, 3, 320, 320))
    large = torch.tensor([[3.0, 4.0, 90.0, 70.0], [10.0, 0.0, 230.0, 200.0], [0.0, 5.0, 310, 300]])
    boxes = [_proposals()[0].proposal_boxes, Boxes(large)]
    calls = []
    op = featsr_roi_heads.multimap_roi_align
    monkeypatch.setattr(
        featsr_roi_heads,
        "multimap_roi_align",
        lambda maps, *a, **k: calls.append(1) or op(maps, *a, **k),
    )
    with torch.no_grad():
        base, sub, _ = heads._pool_generator_inputs(features, boxes)
    res = cfg.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION
    if layout == "C4":
        assert len(calls) == 1
        ref_base, ref_sub = (
            ROIPooler(res, (scale,), 0, "ROIAlignV2")([features[name]], boxes)
            for name, scale in (("res4", 1 / 16), ("res3", 1 / 8))
        )
    else:
        # Sub layers of P2..P5: the bottom-up stage2, stage2, stage3, stage4 (24, 24, 32, 96
        # channels), pooled by one call each and projected to the base width by G.
        assert heads.sub_features == ["stage2", "stage2", "stage3", "stage4"]
        assert len(calls) == 1 + 3
        maps = [features[f] for f in heads.box_in_features]
        ref_base = heads.box_pooler(maps, boxes)
        p = heads.box_pooler
        levels = assign_boxes_to_levels(
            boxes, p.min_level, p.max_level, p.canonical_box_size, p.canonical_level
        )
        ref_sub = torch.zeros_like(ref_base)
        rois = convert_boxes_to_pooler_format(boxes)
        with torch.no_grad():
            for k, level in enumerate(levels.tolist()):
                name = heads.sub_features[level]
                stride = model.backbone.output_shape()[name].stride
                pooled = torchvision.ops.roi_align(
                    features[name], rois[k : k + 1], res, 1 / stride, 0, aligned=True
                )
                index = heads._sub_sources.index(name)
                ref_sub[k] = heads.featsr.generator.project_sub(index, pooled)[0]
        assert levels.unique().numel() > 1  # the boxes span several levels
    torch.testing.assert_close(base, ref_base, rtol=0, atol=1e-6)
    torch.testing.assert_close(sub, ref_sub, rtol=0, atol=1e-6)


def _random_boxes(n, size, seed):
    """n boxes from 7 to 600 px (every FPN level), some crossing the image border."""
    g = torch.Generator().manual_seed(seed)
    side = torch.exp(torch.empty(n).uniform_(2.0, 6.4, generator=g))
    aspect = torch.exp(torch.empty(n).uniform_(-0.7, 0.7, generator=g))
    w, h = side * aspect.sqrt(), side / aspect.sqrt()
    cx, cy = torch.rand(n, generator=g) * size, torch.rand(n, generator=g) * size
    return Boxes(torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], dim=1))


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("pooler_type", ["ROIAlign", "ROIAlignV2"])
@pytest.mark.parametrize("sampling_ratio", [0, 2])
def test_heads_pool_as_detectron2s_box_pooler_bit_for_bit(layout, pooler_type, sampling_ratio):
    """The heads' own pooling parameters (from the config) and featsr_d2's one multi-level
    RoIAlign call give Detectron2's box pooler's RoI features exactly, forward and backward, on
    boxes of every FPN level and an image without boxes."""
    from detectron2.modeling.poolers import assign_boxes_to_levels

    cfg = tiny_featsr_cfg(layout)
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = pooler_type
    cfg.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = sampling_ratio
    model = build_model(cfg).eval()
    heads = model.roi_heads
    pooler = heads.pooler if layout == "C4" else heads.box_pooler
    assert heads.aligned == (pooler_type == "ROIAlignV2")
    with torch.no_grad():
        features = model.backbone(torch.randn(3, 3, 320, 320))
    boxes = [_random_boxes(n, 320, seed) for n, seed in ((60, 1), (45, 2), (0, 3))]
    maps, scales = heads._base_maps(features)
    ours_in = [m.clone().requires_grad_() for m in maps]
    ref_in = [m.clone().requires_grad_() for m in maps]
    (ours,) = heads._pool([(ours_in, scales)], boxes, heads._levels(boxes))
    ref = pooler(ref_in, boxes)
    if layout == "FPN":
        levels = assign_boxes_to_levels(boxes, 2, 5, 224, 4)
        assert set(levels.tolist()) == {0, 1, 2, 3}
    assert ours.shape == ref.shape == (105, maps[0].shape[1], *heads.pooler_resolution)
    assert torch.equal(ours, ref)
    grad = torch.randn_like(ref)
    ours.backward(grad)
    ref.backward(grad)
    for a, b in zip(ours_in, ref_in):
        assert torch.equal(a.grad, b.grad)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
@pytest.mark.parametrize("pooler_type", ["ROIPool", "FeatSRROIAlignV2"])
def test_heads_refuse_a_pooler_that_is_not_roialign(layout, pooler_type):
    """Only Detectron2's RoIAlign types; the FeatSR pooler type, which no config used, is gone."""
    cfg = tiny_featsr_cfg(layout)
    cfg.MODEL.ROI_BOX_HEAD.POOLER_TYPE = pooler_type
    with pytest.raises(ValueError, match="POOLER_TYPE to one of .'ROIAlign', 'ROIAlignV2'."):
        build_model(cfg)


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_heads_with_no_proposals(tiny_tt100k, layout):
    """An image without proposals gets no detections beside one with proposals; in training, a
    batch with no proposals and no ground truth gives finite losses (every loss key present)."""
    cfg = tiny_featsr_cfg(layout)
    model = build_model(cfg).eval()
    heads = model.roi_heads
    features = model.backbone(torch.randn(2, 3, 128, 128))
    empty = Instances((128, 128))
    empty.proposal_boxes = Boxes(torch.zeros(0, 4))
    empty.objectness_logits = torch.zeros(0)
    with torch.no_grad():
        out, _ = heads(None, features, [empty, _proposals()[0]])
    assert len(out) == 2 and len(out[0]) == 0 and len(out[1]) > 0

    heads.train()
    lr_features = model.backbone(torch.randn(2, 3, 64, 64))
    targets = [Instances((128, 128), gt_boxes=Boxes(torch.zeros(0, 4))) for _ in range(2)]
    for t in targets:
        t.gt_classes = torch.zeros(0, dtype=torch.int64)
    with EventStorage():
        _, losses = heads(
            None,
            features,
            [empty, empty],
            targets,
            lr_features=lr_features,
            sr_targets=model.backbone.extract_targets(torch.randn(2, 3, 128, 128)),
        )
    assert {"loss_cls_small", "loss_sr_content", "loss_discriminator"} <= set(losses)
    assert all(math.isfinite(v.item()) for v in losses.values())


SHIPPED_FPN = sorted(
    glob.glob(os.path.join(os.path.dirname(__file__), "..", "..", "configs", "featsr_*FPN*.yaml"))
)


@pytest.mark.parametrize("config_file", SHIPPED_FPN, ids=os.path.basename)
def test_shipped_fpn_configs_feed_g_a_real_sub_layer(config_file):
    """In every shipped FPN config, level P_k's sub layer is the bottom-up stage at stride
    2^(k-1) (P2: stride 4, its own), and G's sub input differs from its base input."""
    cfg = get_featsr_cfg(config_file, ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    assert len(SHIPPED_FPN) >= 4  # stage 2 and stage 3 of the demo and of R50-FPN TT100K
    model = build_model(cfg).eval()
    heads = model.roi_heads
    shapes = model.backbone.output_shape()
    for base, sub in zip(heads.box_in_features, heads.sub_features):
        assert sub not in heads.box_in_features  # a bottom-up stage, not a pyramid level
        assert shapes[sub].stride == max(shapes[base].stride // 2, 4), (base, sub)
    inputs = []
    heads.featsr.generator.register_forward_hook(lambda _m, args, _out: inputs.append(args))
    torch.manual_seed(0)
    with torch.no_grad():
        model([{"image": torch.rand(3, 128, 128) * 255, "height": 128, "width": 128}])
    ((base, sub),) = inputs
    assert base.shape == sub.shape and base.shape[0] > 0
    assert not torch.allclose(base, sub)


# ---------------------------------------------------------------------------------------------
# Cost switches: what they change and what they must not.
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_small_proposal_cap_zero_is_the_base_detector_bit_for_bit(layout):
    cfg = tiny_featsr_cfg(layout, **{"MODEL.FEATSR.MAX_SMALL_PER_IMAGE": 0})
    torch.manual_seed(0)
    featsr = build_model(cfg).eval()
    # G and the small predictor away from the identity and the large one
    for block in featsr.roi_heads.featsr.generator.blocks:
        torch.nn.init.normal_(block.conv2.weight, std=0.01)
    with torch.no_grad():
        featsr.roi_heads.featsr.small_predictor.cls_score.bias.add_(0.5)
    base_cfg = cfg.clone()
    base_cfg.MODEL.META_ARCHITECTURE = "GeneralizedRCNN"
    base_cfg.MODEL.ROI_HEADS.NAME = {"C4": "Res5ROIHeads", "FPN": "StandardROIHeads"}[layout]
    base = build_model(base_cfg).eval()
    base.load_state_dict(featsr.state_dict(), strict=False)
    image = [{"image": torch.rand(3, 128, 128) * 255, "height": 128, "width": 128}]
    calls = []
    featsr.roi_heads.featsr.generator.register_forward_hook(
        lambda _m, args, _o: calls.append(len(args[0]))
    )
    with torch.no_grad():
        ours = featsr(image)[0]["instances"]
        theirs = base(image)[0]["instances"]
        assert len(theirs) > 0 and calls == [0]  # no RoI went through G
        for field in ("pred_boxes", "scores", "pred_classes"):
            a, b = ours.get(field), theirs.get(field)
            a, b = (a.tensor, b.tensor) if field == "pred_boxes" else (a, b)
            assert torch.equal(a, b), field
        # K = 2: at most two small proposals per image take the small path, the RPN's best.
        featsr.roi_heads.max_small_per_image = 2
        calls.clear()
        featsr(image)
        assert calls == [2]
        featsr.roi_heads.max_small_per_image = -1
        calls.clear()
        featsr(image)
        assert calls[0] > 2


def test_pairs_per_image_are_capped_foreground_first(tiny_tt100k):
    train_name, _, _ = tiny_tt100k
    cfg = tiny_featsr_cfg(**{"MODEL.FEATSR.SMALL_SIZE": 48})
    model = build_model(cfg).train()
    heads = model.roi_heads
    counts = {}
    generator = heads.featsr.generator.forward

    def count(base, sub):
        counts.setdefault(heads.max_pairs_per_image, []).append(len(base))
        return generator(base, sub)

    heads.featsr.generator.forward = count
    batch = _batch(cfg, train_name, with_empty=False)
    for cap in (-1, 2):
        heads.max_pairs_per_image = cap
        torch.manual_seed(0)
        with EventStorage():
            model(batch)
    # calls: the small proposals' detection pass, then the pairs
    assert counts[-1][1] > 2 and counts[2][1] == 2
    assert counts[-1][0] == counts[2][0]  # the detection pass is not capped


def test_classify_boxes_and_generator_change(tiny_tt100k):
    _, test_name, _ = tiny_tt100k
    cfg = tiny_featsr_cfg(layout="FPN")
    model = build_model(cfg).eval()
    heads = model.roi_heads
    d = next(d for d in DatasetCatalog.get(test_name) if d["annotations"])
    image = DatasetMapper(cfg, is_train=False)(copy.deepcopy(d))
    with torch.no_grad():
        features = model.backbone(model.preprocess_image([image]).tensor)
    boxes = [Boxes(torch.tensor([[10.0, 12.0, 30.0, 28.0], [40.0, 40.0, 100.0, 90.0]]))]
    change = heads.generator_change(features, boxes)
    assert torch.equal(change, torch.zeros(2))  # G starts as the identity
    small = heads.classify_boxes(features, boxes, small_path=True)
    large = heads.classify_boxes(features, boxes, small_path=False)
    assert small.shape == (2, 46) and torch.allclose(small.sum(1), torch.ones(2))
    torch.testing.assert_close(small, large)  # identity G and the copied predictor: the same
    for block in heads.featsr.generator.blocks:
        torch.nn.init.normal_(block.conv2.weight, std=0.05)
    assert bool((heads.generator_change(features, boxes) > 0).all())
    assert not torch.allclose(heads.classify_boxes(features, boxes, small_path=True), large)
