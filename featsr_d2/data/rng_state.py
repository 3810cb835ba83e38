"""The state of the process-wide random number generators that training draws from: Python's
``random``, numpy's global ``np.random``, torch's CPU generator and, once CUDA is initialized, the
generator of the current CUDA device (the one device a Detectron2 training process uses). Used to
checkpoint them (``featsr_d2.engine.training_state``) and to give a piece of work its own seeded
generators without disturbing anyone else's (data augmentation, evaluation)."""

import contextlib
import random
from typing import Any

import numpy as np
import torch

__all__ = ["capture_rng_state", "isolated_rng", "restore_rng_state"]


def capture_rng_state() -> dict[str, Any]:
    """The current state of every global generator, in types that ``torch.load`` reads with
    ``weights_only=True`` (tensors, numbers, strings, lists, tuples, dicts)."""
    name, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": (name, keys.tolist(), pos, has_gauss, cached_gaussian),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Set the global generators to a state from :func:`capture_rng_state`."""
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached_gaussian = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached_gaussian))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


@contextlib.contextmanager
def isolated_rng(seed: int | None = None):
    """Run a block on its own generators: seeded from ``seed`` (Python, numpy and torch CPU) when
    given, and in any case leaving the caller's generators as they were when the block started."""
    saved = capture_rng_state()
    try:
        if seed is not None:
            random.seed(seed)
            np.random.seed(seed % 2**32)
            torch.default_generator.manual_seed(seed)  # CPU only: no lazily queued CUDA seed
        yield
    finally:
        restore_rng_state(saved)
