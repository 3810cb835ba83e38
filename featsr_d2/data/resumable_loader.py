"""A detection training loader whose every batch is a function of (seed, position), with a small
state that a checkpoint stores so that a resumed run sees exactly the batches of an uninterrupted
one.

How it is exact:

- the sample order is :class:`ResumableTrainingSampler`'s stream of positions (a function of the
  seed and the position, sharded over ranks as Detectron2's ``TrainingSampler`` does);
- the mapper (augmentation) of the sample at position ``p`` runs on Python, numpy and torch
  generators seeded by ``(seed, p)`` (:func:`isolated_rng`), so a sample's data do not depend on
  the number of workers, on prefetching, or on what ran before; in the main process
  (``num_workers=0``) the training process's own generators are left untouched;
- the batches are formed in the main process, in stream order: with ``num_workers`` workers,
  worker ``w`` maps every ``num_workers``-th position of this rank and the DataLoader returns the
  workers' outputs round-robin, which is the stream order again;
- the state (:meth:`ResumableTrainLoader.state_dict`) is the seed, the next position to read and
  the positions waiting in the aspect-ratio groups (which Detectron2's ``AspectRatioGroupedDataset``
  loses at a restart when images of both orientations are mixed); resuming re-maps the waiting
  positions (their data are a function of their positions) and reads on from the next one. The
  DataLoader's own base seed comes from a private generator, not from torch's global one.

Limits: a mapper must draw its randomness from the global generators (Detectron2's augmentations
and featsr_d2's mappers do); a generator object the mapper keeps across samples is not reseeded
and makes the data depend on the worker layout. A mapper that returns None drops that position
(Detectron2's ``MapDataset`` would retry with another random sample). The stream continues
exactly only with the same world size; resuming with another one starts all ranks after the
furthest position any rank had read and drops the waiting samples (logged). Only
``DATALOADER.SAMPLER_TRAIN: TrainingSampler`` is implemented (others raise).
"""

import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import torch
from detectron2.data import DatasetFromList, DatasetMapper, get_detection_dataset_dicts
from detectron2.utils import comm
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from featsr_d2.data.checked_mapper import CheckedMapper
from featsr_d2.data.resumable_sampler import ResumableTrainingSampler, sample_seed
from featsr_d2.data.rng_state import isolated_rng

__all__ = ["ResumableTrainLoader", "build_resumable_train_loader"]

logger = logging.getLogger(__name__)


def _first(batch):
    return batch


class _MappedStream(IterableDataset):
    """``(position, mapped dict or None)`` of this rank's stream from the sampler's start; in a
    worker, every ``num_workers``-th of them."""

    def __init__(self, dataset, mapper: Callable, sampler: ResumableTrainingSampler):
        self.dataset = dataset
        self.mapper = mapper
        self.sampler = sampler

    def map(self, position: int, index: int) -> Any:
        with isolated_rng(sample_seed(self.sampler.seed, position)):
            return self.mapper(self.dataset[index])

    def __iter__(self):
        stream = iter(self.sampler)
        worker = get_worker_info()
        if worker is not None:
            stream = itertools.islice(stream, worker.id, None, worker.num_workers)
        for position, index in stream:
            yield position, self.map(position, index)


class ResumableTrainLoader:
    """Iterable of per-rank training batches (lists of mapped dicts), grouped by aspect ratio as
    Detectron2's ``AspectRatioGroupedDataset`` groups them (width > height or not), with a
    checkpointable position. One iteration at a time: :meth:`load_state_dict` before it starts."""

    def __init__(
        self,
        dataset,
        mapper: Callable,
        *,
        batch_size: int,
        seed: int,
        aspect_ratio_grouping: bool = True,
        num_workers: int = 0,
        shuffle: bool = True,
    ):
        """
        Args:
            dataset: a list of dataset dicts or a map-style dataset.
            mapper: turns a dataset dict into the model's input dict (or None to drop it).
            batch_size: images per batch on this rank.
            seed: the stream's seed, the same on every rank.
            aspect_ratio_grouping: batch landscape and portrait images separately.
            num_workers: DataLoader worker processes mapping samples.
            shuffle: see :class:`ResumableTrainingSampler`.
        """
        if isinstance(dataset, list):
            dataset = DatasetFromList(dataset, copy=False)
        self.dataset = dataset
        self.mapper = mapper
        self.batch_size = batch_size
        self.aspect_ratio_grouping = aspect_ratio_grouping
        self.num_workers = num_workers
        self.sampler = ResumableTrainingSampler(len(dataset), seed=seed, shuffle=shuffle)
        self._next_position = self.sampler.rank
        self._waiting: list[list[int]] = [[], []]  # positions in the two aspect-ratio groups
        self._started = False

    @property
    def seed(self) -> int:
        return self.sampler.seed

    def _group(self, data: dict) -> int:
        if not self.aspect_ratio_grouping:
            return 0
        return 0 if data["width"] > data["height"] else 1

    def __iter__(self) -> Iterator[list[dict]]:
        if self._started:
            raise RuntimeError("ResumableTrainLoader supports one iteration at a time")
        self._started = True
        self.sampler.start = self._next_position
        stream = _MappedStream(self.dataset, self.mapper, self.sampler)
        groups: list[list[tuple[int, dict]]] = [[], []]
        for positions in self._waiting:  # resumed: the samples that were waiting, re-mapped
            for position in positions:
                data = stream.map(position, self.sampler.index(position))
                groups[self._group(data)].append((position, data))
        loader = DataLoader(
            stream,
            batch_size=None,
            num_workers=self.num_workers,
            collate_fn=_first,
            generator=torch.Generator(),  # its base seed must not draw from the global generator
        )
        for position, data in loader:
            self._next_position = position + self.sampler.world_size
            if data is None:
                continue
            group = groups[self._group(data)]
            group.append((position, data))
            if len(group) == self.batch_size:
                batch = [d for _, d in group]
                del group[:]
                self._waiting = [[p for p, _ in g] for g in groups]
                yield batch

    def state_dict(self) -> dict[str, Any]:
        """Where this rank's stream stands after the batches handed out so far."""
        return {
            "seed": self.seed,
            "world_size": self.sampler.world_size,
            "next_position": self._next_position,
            "waiting": [list(g) for g in self._waiting],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue this rank's stream from ``state`` (from :meth:`state_dict` on this rank)."""
        if self._started:
            raise RuntimeError("load the loader's state before iterating over it")
        self.sampler.seed = state["seed"]
        self._next_position = state["next_position"]
        self._waiting = [list(g) for g in state["waiting"]]

    def load_state_dicts(self, states: list[dict[str, Any]]) -> None:
        """Continue from the states of every rank of the saved run: exactly when the world size
        is the same, else from after the furthest position any rank had read."""
        rank, world_size = self.sampler.rank, self.sampler.world_size
        if len(states) == world_size and states[rank]["world_size"] == world_size:
            self.load_state_dict(states[rank])
            return
        furthest = max(s["next_position"] for s in states)
        start = furthest + (-furthest) % world_size + rank
        logger.warning(
            "The checkpoint's data stream was saved by %d processes, this run has %d: the stream "
            "continues at position %d without the samples that were waiting for a batch; "
            "the resumed run is not exact.",
            len(states),
            world_size,
            start,
        )
        self.load_state_dict(dict(states[0], next_position=start, waiting=[[], []]))


def build_resumable_train_loader(cfg, mapper: Callable | None = None) -> ResumableTrainLoader:
    """The :class:`ResumableTrainLoader` for ``cfg.DATASETS.TRAIN`` (Detectron2's dataset options,
    ``DatasetMapper(cfg, True)`` unless ``mapper`` is given, wrapped in a :class:`CheckedMapper`
    under ``DATASETS.TT100K.ON_BAD_RECORD``). Its seed is ``cfg.SEED``, or one
    seed drawn for all ranks when ``cfg.SEED`` is negative (the checkpoint keeps it)."""
    if cfg.DATALOADER.SAMPLER_TRAIN != "TrainingSampler":
        raise ValueError(
            "the resumable loader implements DATALOADER.SAMPLER_TRAIN 'TrainingSampler' only, "
            f"got {cfg.DATALOADER.SAMPLER_TRAIN!r}"
        )
    dicts = get_detection_dataset_dicts(
        cfg.DATASETS.TRAIN,
        filter_empty=cfg.DATALOADER.FILTER_EMPTY_ANNOTATIONS,
        min_keypoints=(
            cfg.MODEL.ROI_KEYPOINT_HEAD.MIN_KEYPOINTS_PER_IMAGE if cfg.MODEL.KEYPOINT_ON else 0
        ),
        proposal_files=cfg.DATASETS.PROPOSAL_FILES_TRAIN if cfg.MODEL.LOAD_PROPOSALS else None,
    )
    world_size = comm.get_world_size()
    if cfg.SOLVER.IMS_PER_BATCH % world_size:
        raise ValueError(
            f"SOLVER.IMS_PER_BATCH {cfg.SOLVER.IMS_PER_BATCH} is not divisible by the "
            f"{world_size} processes"
        )
    seed = cfg.SEED if cfg.SEED >= 0 else comm.shared_random_seed()
    mapper = DatasetMapper(cfg, True) if mapper is None else mapper
    return ResumableTrainLoader(
        dicts,
        # An image that does not decode is named, or skipped and counted, per the policy.
        CheckedMapper(mapper, cfg.DATASETS.TT100K.ON_BAD_RECORD),
        batch_size=cfg.SOLVER.IMS_PER_BATCH // world_size,
        seed=seed,
        aspect_ratio_grouping=cfg.DATALOADER.ASPECT_RATIO_GROUPING,
        num_workers=cfg.DATALOADER.NUM_WORKERS,
    )
