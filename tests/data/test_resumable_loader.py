"""The resumable training sampler and loader: the stream is a function of (seed, position), a
loader restored from a state continues exactly (aspect-ratio groups with waiting samples
included), and workers, prefetching and the caller's generators change nothing."""

import random

import numpy as np
import pytest
import torch

from featsr_d2.data.resumable_loader import ResumableTrainLoader
from featsr_d2.data.resumable_sampler import ResumableTrainingSampler
from featsr_d2.data.rng_state import capture_rng_state

# Landscape and portrait images, so that aspect-ratio groups hold samples between batches.
DICTS = [
    {"image_id": i, "width": 40 if i % 3 else 20, "height": 30 if i % 3 else 50} for i in range(10)
]


def _augment(d: dict) -> dict:
    """A mapper drawing from every global generator, as Detectron2's augmentations do."""
    return dict(d, draws=(random.random(), float(np.random.rand()), float(torch.rand(()))))


def _take(loader, n: int) -> list[list[dict]]:
    it = iter(loader)
    return [next(it) for _ in range(n)]


def _loader(seed=7, **kwargs) -> ResumableTrainLoader:
    return ResumableTrainLoader(list(DICTS), _augment, batch_size=2, seed=seed, **kwargs)


def test_sampler_epochs_are_permutations_and_ranks_share_the_stream():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    single = take(ResumableTrainingSampler(5, seed=3, rank=0, world_size=1), 15)
    assert [p for p, _ in single] == list(range(15))
    for epoch in range(3):
        assert sorted(i for _, i in single[5 * epoch : 5 * epoch + 5]) == list(range(5))
    assert len({tuple(i for _, i in single[5 * e : 5 * e + 5]) for e in range(3)}) > 1
    ranks = [take(ResumableTrainingSampler(5, seed=3, rank=r, world_size=2), 7) for r in (0, 1)]
    merged = sorted(ranks[0] + ranks[1])
    assert merged == single[:14]
    late = take(ResumableTrainingSampler(5, seed=3, rank=1, world_size=2, start=9), 3)
    assert late == ranks[1][4:7]
    other_seed = take(ResumableTrainingSampler(5, seed=4, rank=0, world_size=1), 15)
    assert other_seed != single
    with pytest.raises(ValueError, match="does not belong"):
        next(iter(ResumableTrainingSampler(5, seed=3, rank=1, world_size=2, start=2)))


def test_restored_loader_continues_the_uninterrupted_stream():
    straight = _take(_loader(), 8)
    for cut in range(1, 8):
        first = _loader()
        assert _take(first, cut) == straight[:cut]
        state = first.state_dict()
        resumed = _loader(seed=99)  # the seed comes from the state
        resumed.load_state_dict(state)
        assert _take(resumed, 8 - cut) == straight[cut:], cut
    # Some cut left a sample waiting in the other aspect-ratio group: that path was exercised.
    waiting = []
    for cut in range(1, 8):
        loader = _loader()
        _take(loader, cut)
        waiting.append(sum(len(g) for g in loader.state_dict()["waiting"]))
    assert any(waiting)
    assert all(len({b["width"] > b["height"] for b in batch}) == 1 for batch in straight)


def test_batches_do_not_depend_on_workers_nor_touch_the_callers_generators():
    torch.manual_seed(0)
    np.random.seed(0)
    random.seed(0)
    before = capture_rng_state()
    in_process = _take(_loader(), 6)
    after = capture_rng_state()
    assert torch.equal(before["torch"], after["torch"])
    assert before["numpy"] == after["numpy"]
    assert before["python"] == after["python"]
    assert _take(_loader(num_workers=2), 6) == in_process
    assert _take(_loader(seed=8), 6) != in_process


def test_load_state_after_iterating_is_refused():
    loader = _loader()
    _take(loader, 1)
    with pytest.raises(RuntimeError, match="before iterating"):
        loader.load_state_dict(loader.state_dict())
