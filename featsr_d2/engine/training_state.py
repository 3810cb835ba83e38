"""What a checkpoint needs beyond model, optimizers, scheduler and iteration for a resumed run to
be bit-identical to an uninterrupted one: every rank's random number generators and data-stream
position.

:class:`TrainingStateHook` is a Detectron2 hook with ``state_dict`` / ``load_state_dict``, so its
state travels inside the trainer's checkpointable (``checkpoint["trainer"]["hooks"]``) and
``resume_or_load(resume=True)`` restores it. Only rank 0 writes checkpoints, so in the
``after_step`` of an iteration that the ``PeriodicCheckpointer`` will save (every
``SOLVER.CHECKPOINT_PERIOD`` iterations and the last one), every rank sends its state to rank 0
(``comm.gather``; the hook runs before the checkpointer). Per rank the state is

- ``rng``: Python ``random``, numpy, torch CPU and the current CUDA device's generator
  (:func:`featsr_d2.data.rng_state.capture_rng_state`): what ROI/anchor sampling
  (``torch.randperm``) and anything else in the model draws from;
- ``data``: the :class:`featsr_d2.data.resumable_loader.ResumableTrainLoader`'s stream state
  (seed, next position, samples waiting in an aspect-ratio group), when the trainer's loader has
  one.

On load every rank (each reads the checkpoint file, as Detectron2's resume does) restores its own
entry at once. Nothing may draw random numbers between ``resume_or_load`` and training; the
trainer's evaluation runs on isolated generators (``FeatSRTrainer.test``) so that an evaluation
inside the schedule draws nothing either. A checkpoint saved outside those iterations (a manual
``checkpointer.save``) holds the live state of rank 0 only.
"""

import logging
from typing import Any

from detectron2.engine import HookBase
from detectron2.utils import comm

from featsr_d2.data.rng_state import capture_rng_state, restore_rng_state

__all__ = ["TrainingStateHook"]

logger = logging.getLogger(__name__)


class TrainingStateHook(HookBase):
    """Checkpoints every rank's generators and data position; restores them on resume."""

    def __init__(self, checkpoint_period: int):
        """
        Args:
            checkpoint_period: the PeriodicCheckpointer's period (``SOLVER.CHECKPOINT_PERIOD``).
        """
        self.checkpoint_period = checkpoint_period
        self._saved: tuple[int, list[dict[str, Any]]] | None = None  # (iteration, every rank's)
        self._loaded = False

    def _data_loader(self):
        loader = getattr(self.trainer, "data_loader", None)
        return loader if hasattr(loader, "load_state_dicts") else None

    def _local_state(self) -> dict[str, Any]:
        state = {"rng": capture_rng_state()}
        loader = self._data_loader()
        if loader is not None:
            state["data"] = loader.state_dict()
        return state

    def before_train(self):
        if self.trainer.iter > 0 and not self._loaded:
            logger.warning(
                "Resumed from a checkpoint without generator and data-stream states (an older "
                "checkpoint): the run continues, but not exactly as an uninterrupted one."
            )

    def after_step(self):
        it = self.trainer.iter
        if (it + 1) % self.checkpoint_period == 0 or it >= self.trainer.max_iter - 1:
            self._saved = (it, comm.gather(self._local_state(), dst=0))

    def state_dict(self) -> dict[str, Any]:
        if self._saved is not None and self._saved[0] == self.trainer.iter and self._saved[1]:
            return {"ranks": self._saved[1]}
        if comm.get_world_size() > 1:
            logger.warning(
                "Checkpoint at iteration %d outside the checkpoint period: it holds the generator "
                "and data states of rank 0 only.",
                self.trainer.iter,
            )
        return {"ranks": [self._local_state()]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._loaded = True
        ranks = state_dict["ranks"]
        rank = comm.get_rank()
        if rank < len(ranks):
            restore_rng_state(ranks[rank]["rng"])
        else:
            logger.warning("The checkpoint holds no generator state for rank %d.", rank)
        loader = self._data_loader()
        if loader is not None and all("data" in r for r in ranks):
            loader.load_state_dicts([r["data"] for r in ranks])
        elif loader is not None:
            logger.warning("The checkpoint holds no data-stream state: the stream restarts.")
