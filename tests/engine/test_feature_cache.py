"""The feature cache of FeatSR's frozen trunk: the heads trained and evaluated from it compute what
the live model computes (float32 exactly, float16 within a stated tolerance), and it resumes."""

import copy
import os

import pytest
import torch
from common import tiny_featsr_cfg
from detectron2.data import DatasetCatalog, DatasetMapper
from detectron2.modeling import build_model
from detectron2.utils.events import EventStorage

from featsr_d2.engine import feature_cache
from featsr_d2.engine.feature_cache import (
    CachedHeadsTrainer,
    cache_features,
    collate_cached,
    load_feature_cache,
    predict_cached,
)

pytestmark = pytest.mark.usefixtures("one_thread")

# float16 storage of the maps: the heads' losses move by less than this (relative), and the
# detections' scores by less than FP16_SCORE_ATOL.
FP16_LOSS_RTOL = 2e-2
FP16_SCORE_ATOL = 2e-2


def _model_and_inputs(tiny_tt100k, supervision="extractor", num_images=2):
    train_name, _, _ = tiny_tt100k
    cfg = tiny_featsr_cfg(
        "FPN",
        **{
            "MODEL.FEATSR.SUPERVISION": supervision,
            "DATASETS.TRAIN": (train_name,),
            "SOLVER.IMS_PER_BATCH": num_images,
            "SOLVER.MAX_ITER": 2,
            "SOLVER.STEPS": (),
            "SOLVER.WARMUP_ITERS": 0,
        },
    )
    model = build_model(cfg)
    with torch.no_grad():  # G away from the identity, so that its input matters
        for block in model.roi_heads.featsr.generator.blocks:
            block.conv2.weight.normal_(std=0.05)
    dicts = [d for d in DatasetCatalog.get(train_name) if d["annotations"]][:num_images]
    mapper = DatasetMapper(cfg, is_train=True)
    inputs = [mapper(copy.deepcopy(d)) for d in dicts]
    return cfg, model, inputs


def _live_losses(model, inputs, seed=0):
    model.train()
    torch.manual_seed(seed)
    with EventStorage(0):
        return model(inputs)


def _cached_losses(model, cache, seed=0):
    model.train()
    torch.manual_seed(seed)
    features, proposals, targets, lr, targets_sr = collate_cached(cache, with_pairs=True)
    with EventStorage(0):
        _, losses = model.roi_heads(
            None, features, proposals, targets, lr_features=lr, sr_targets=targets_sr
        )
    return losses


@pytest.mark.parametrize("supervision", ["extractor", "naive"])
def test_cached_heads_losses_equal_the_live_models_in_float32(tiny_tt100k, tmp_path, supervision):
    _, model, inputs = _model_and_inputs(tiny_tt100k, supervision)
    live = _live_losses(model, inputs)
    cache = cache_features(model, inputs, str(tmp_path), with_pairs=True, dtype=torch.float32)
    cached = _cached_losses(model, cache)
    assert set(cached) == set(live) and "loss_sr_content" in cached
    for k in live:
        torch.testing.assert_close(cached[k], live[k], rtol=1e-5, atol=1e-6, msg=k)


def test_float16_cache_stays_within_the_stated_tolerance(tiny_tt100k, tmp_path):
    _, model, inputs = _model_and_inputs(tiny_tt100k)
    live = _live_losses(model, inputs)
    cache = cache_features(model, inputs, str(tmp_path), with_pairs=True)
    assert next(iter(cache[0].features.values())).dtype == torch.float16
    cached = _cached_losses(model, cache)
    for k in live:
        torch.testing.assert_close(cached[k], live[k], rtol=FP16_LOSS_RTOL, atol=1e-4, msg=k)


def test_cached_inference_equals_the_live_model(tiny_tt100k, tmp_path):
    _, test_name, _ = tiny_tt100k
    cfg, model, _ = _model_and_inputs(tiny_tt100k)
    mapper = DatasetMapper(cfg, is_train=False)
    inputs = [mapper(copy.deepcopy(d)) for d in DatasetCatalog.get(test_name)[:3]]
    model.eval()
    with torch.no_grad():
        live = model(inputs)
    for dtype, atol in ((torch.float32, 1e-5), (torch.float16, FP16_SCORE_ATOL)):
        cache = cache_features(
            model, inputs, str(tmp_path / str(dtype)), with_pairs=False, dtype=dtype
        )
        cached = predict_cached(model, cache)
        for a, b in zip(live, cached):
            a = a["instances"]
            assert b.image_size == a.image_size
            top = min(len(a), len(b), 10)
            assert top > 0
            torch.testing.assert_close(b.scores[:top], a.scores[:top], atol=atol, rtol=0)
            if dtype == torch.float32:
                assert len(a) == len(b)
                torch.testing.assert_close(b.pred_boxes.tensor, a.pred_boxes.tensor)
                assert torch.equal(b.pred_classes, a.pred_classes)


def test_cache_resumes_from_its_chunks_and_recomputes_a_different_one(
    tiny_tt100k, tmp_path, monkeypatch
):
    _, model, inputs = _model_and_inputs(tiny_tt100k)
    first = cache_features(model, inputs, str(tmp_path), with_pairs=True, chunk_size=1)
    assert sorted(os.listdir(tmp_path)) == ["chunk_000000.pt", "chunk_000001.pt"]
    assert len(load_feature_cache(str(tmp_path))) == 2

    def refuse(*args, **kwargs):
        raise AssertionError("a cached chunk was recomputed")

    monkeypatch.setattr(feature_cache, "_cache_one", refuse)
    again = cache_features(model, inputs, str(tmp_path), with_pairs=True, chunk_size=1)
    assert torch.equal(again[1].features["p2"], first[1].features["p2"])
    with pytest.raises(AssertionError, match="recomputed"):  # made otherwise: recomputed
        cache_features(model, inputs, str(tmp_path), with_pairs=False, chunk_size=1)


def test_a_batch_of_different_sizes_is_refused_with_the_reason(tiny_tt100k, tmp_path):
    _, model, inputs = _model_and_inputs(tiny_tt100k)
    cache = cache_features(model, inputs, str(tmp_path), with_pairs=False)
    cache[1].features = {k: v[..., :-1, :] for k, v in cache[1].features.items()}
    with pytest.raises(ValueError, match="one input size"):
        collate_cached(cache, with_pairs=False)
    with pytest.raises(ValueError, match="no 0.5x features"):
        collate_cached(cache[:1], with_pairs=True)


def test_trainer_pairs_arms_on_images_and_sampling_and_trains_only_what_the_phase_trains(
    tiny_tt100k, tmp_path
):
    cfg, model, inputs = _model_and_inputs(tiny_tt100k, num_images=2)
    cfg.defrost()
    cfg.SOLVER.IMS_PER_BATCH = 1
    cache = cache_features(model, inputs, str(tmp_path), with_pairs=True)
    trainer = CachedHeadsTrainer(cfg, model, cache, seed=3)
    batches = [b for _, b in zip(range(4), trainer._batches())]
    assert sorted(batches[0] + batches[1]) == [0, 1]  # an epoch is a permutation
    assert batches == [b for _, b in zip(range(4), CachedHeadsTrainer(
        cfg, model, cache, seed=3)._batches())]  # fmt: skip
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = trainer.train(log_every=1)
    assert set(losses) >= {"loss_cls_small", "loss_sr_content", "loss_discriminator"}
    after = model.state_dict()
    changed = {
        k.removeprefix("roi_heads.featsr.").split(".")[0]
        for k in before
        if not torch.equal(before[k], after[k])
    }
    assert changed == {"generator", "discriminator", "small_head", "small_predictor"}


class _Planted:
    """Pickles as a call: unpickling it runs ``open(path, "w")`` (code execution)."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_planted_chunk_runs_no_code_and_is_refused_by_name(tiny_tt100k, tmp_path):
    """Issue 22.2: chunks are read with weights_only=True; one the cache did not write is refused,
    naming it, when the cache resumes or is loaded, and its code never runs."""
    _, model, inputs = _model_and_inputs(tiny_tt100k)
    folder = tmp_path / "cache"
    cache_features(model, inputs, str(folder), with_pairs=False, chunk_size=1)
    marker = tmp_path / "code_ran"
    planted = folder / "chunk_000001.pt"
    meta = {"version": feature_cache.CACHE_VERSION, "with_pairs": False, "dtype": "torch.float16"}
    torch.save({"meta": meta, "images": [_Planted(str(marker))]}, planted)
    for read in (
        lambda: cache_features(model, inputs, str(folder), with_pairs=False, chunk_size=1),
        lambda: load_feature_cache(str(folder)),
    ):
        with pytest.raises(ValueError, match=rf"{planted}: not a feature-cache chunk"):
            read()
        assert not marker.exists()


def test_a_chunk_of_plain_values_but_other_content_is_refused(tiny_tt100k, tmp_path):
    _, model, inputs = _model_and_inputs(tiny_tt100k)
    cache_features(model, inputs, str(tmp_path), with_pairs=False, chunk_size=1)
    chunk = tmp_path / "chunk_000000.pt"
    saved = torch.load(chunk, weights_only=True)
    saved["images"][0]["features"] = "not maps"
    torch.save(saved, chunk)
    with pytest.raises(ValueError, match=r"chunk_000000\.pt: .*image 0 has fields of the wrong "
                       r"type: \['features'\]"):  # fmt: skip
        load_feature_cache(str(tmp_path))
