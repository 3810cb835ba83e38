"""An infinite training sampler whose stream is a function of (seed, position), so that training
can restart it at any position.

Detectron2's ``TrainingSampler`` draws its epochs from one generator seeded once: a resumed run
restarts the stream from its first element. Here the stream is laid out by *position*: position
``p`` (0, 1, 2, ... over all ranks together) is sample ``perm_e[p mod n]`` of epoch ``e = p // n``,
where ``perm_e`` is a permutation drawn from a generator seeded by ``(seed, e)`` alone
(:func:`epoch_seed`). Rank ``r``
of ``w`` takes the positions ``p = r, r + w, r + 2w, ...``, as ``TrainingSampler`` shards its
stream, and can start at any of them. :func:`sample_seed` gives each position its own seed for
data augmentation (``featsr_d2.data.resumable_loader``).
"""

from collections.abc import Iterator

import numpy as np
import torch
from detectron2.utils import comm
from torch.utils.data import Sampler

__all__ = ["ResumableTrainingSampler", "derive_seed", "epoch_seed", "sample_seed"]


def derive_seed(*entropy: int) -> int:
    """A 63-bit seed made from non-negative integers (numpy's ``SeedSequence`` hashing): equal
    inputs give equal seeds, neighbouring inputs give unrelated ones."""
    state = np.random.SeedSequence([int(e) for e in entropy]).generate_state(1, np.uint64)[0]
    return int(state) >> 1


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of epoch ``epoch``'s sample order."""
    return derive_seed(seed, 0, epoch)


def sample_seed(seed: int, position: int) -> int:
    """The seed of the data augmentation of the sample at stream position ``position``."""
    return derive_seed(seed, 1, position)


class ResumableTrainingSampler(Sampler):
    """Yields ``(position, index)`` pairs of this rank forever, starting at :attr:`start`."""

    def __init__(
        self,
        size: int,
        *,
        seed: int,
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
        start: int | None = None,
    ):
        """
        Args:
            size: the number of samples of the dataset.
            seed: the stream's seed (non-negative); every rank must use the same one.
            shuffle: draw each epoch's order at random; else 0, 1, ..., size - 1 every epoch.
            rank, world_size: this process's place; default: detectron2's ``comm``.
            start: the first position to yield; it must belong to this rank
                (``start % world_size == rank``). Default: ``rank`` (the beginning).
        """
        if size <= 0:
            raise ValueError(f"ResumableTrainingSampler needs a non-empty dataset, got {size}")
        if seed < 0:
            raise ValueError(f"the seed must be non-negative, got {seed}")
        self.size = size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = comm.get_rank() if rank is None else rank
        self.world_size = comm.get_world_size() if world_size is None else world_size
        self.start = self.rank if start is None else start
        self._epoch = -1
        self._order = torch.arange(size)

    def index(self, position: int) -> int:
        """The dataset index at stream position ``position``."""
        epoch, offset = divmod(position, self.size)
        if self.shuffle and epoch != self._epoch:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
            self._order = torch.randperm(self.size, generator=generator)
            self._epoch = epoch
        return int(self._order[offset])

    def __iter__(self) -> Iterator[tuple[int, int]]:
        if self.start < 0 or self.start % self.world_size != self.rank:
            raise ValueError(
                f"start position {self.start} does not belong to rank {self.rank} of "
                f"{self.world_size}"
            )
        position = self.start
        while True:
            yield position, self.index(position)
            position += self.world_size
