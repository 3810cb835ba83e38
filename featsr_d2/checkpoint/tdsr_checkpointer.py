"""The checkpointer of ``TaskDrivenSR`` models: the model is built without weights, and this
checkpointer loads, after the run's own checkpoint (``MODEL.WEIGHTS``, or the last checkpoint
when resuming), what that checkpoint does not hold:

- the frozen detector's trained weights (``MODEL.TDSR.DETECTOR_WEIGHTS``), strictly: a detector
  weight missing from the file raises (a frozen detector with a missing weight would be silently
  wrong; Detectron2 only logs it). Empty: the detector stays untrained, with a warning (tests);
- the SR network's initial weights (``MODEL.SR.WEIGHTS``, else ``MODEL.SR.WARM_START``; see
  :func:`featsr_d2.checkpoint.sr_weights.load_initial_sr_weights`).

A checkpoint that holds the whole model (a resumed run, an evaluation) is loaded alone, so resuming
is exact. ``load("")`` loads the two parts only.
"""

from __future__ import annotations

import logging
import os

from torch import nn

from featsr_d2.checkpoint.detection_checkpointer import AtomicDetectionCheckpointer
from featsr_d2.checkpoint.pickle_weights import WeightsFileError, refuse_untrusted_pickle
from featsr_d2.checkpoint.sr_weights import load_initial_sr_weights

__all__ = ["TDSRCheckpointer", "load_detector_weights"]

logger = logging.getLogger(__name__)


def load_detector_weights(detector: nn.Module, path: str) -> None:
    """Load a detector checkpoint with Detectron2's reader (.pth, .pkl, URLs, name conversion),
    strictly: a weight missing from it raises (a frozen detector with a missing weight would be
    silently wrong; Detectron2 only logs it).

    Raises:
        WeightsFileError: ``path`` is a local path that does not exist, or untrusted ``.pkl``.
        RuntimeError: the file lacks detector weights.
    """

    class StrictCheckpointer(AtomicDetectionCheckpointer):  # its careful reads, weights_only
        def _log_incompatible_keys(self, incompatible) -> None:
            super()._log_incompatible_keys(incompatible)
            if incompatible.missing_keys:
                missing = list(incompatible.missing_keys)
                raise RuntimeError(f"{path} lacks {len(missing)} detector weights: {missing[:5]}")

    refuse_untrusted_pickle(path)
    if "://" not in path and not os.path.isfile(path):
        raise WeightsFileError(
            f"MODEL.TDSR.DETECTOR_WEIGHTS: {path} does not exist (working directory "
            f"{os.getcwd()}); it names the trained detector's checkpoint."
        )
    StrictCheckpointer(detector).load(path)
    logger.info("Loaded the frozen detector's weights from %s", path)


class TDSRCheckpointer(AtomicDetectionCheckpointer):
    """:class:`AtomicDetectionCheckpointer` for ``TaskDrivenSR``; see the module docstring."""

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        detector_weights: str = "",
        sr_weights: str = "",
        sr_warm_start: str = "",
        **kwargs,
    ):
        """
        Args:
            detector_weights: the frozen detector's checkpoint (``MODEL.TDSR.DETECTOR_WEIGHTS``).
            sr_weights, sr_warm_start: the SR network's initial weights (``MODEL.SR.WEIGHTS``,
                ``MODEL.SR.WARM_START``).
            model, save_dir, kwargs: as for :class:`AtomicDetectionCheckpointer`.
        """
        super().__init__(model, save_dir, **kwargs)
        self.detector_weights = detector_weights
        self.sr_weights = sr_weights
        self.sr_warm_start = sr_warm_start
        self._missing: set[str] | None = None

    @classmethod
    def from_config(cls, cfg, model, save_dir: str = "", **kwargs) -> TDSRCheckpointer:
        """The checkpointer of a TDSR config's model; ``kwargs`` as for the constructor."""
        return cls(
            model,
            save_dir,
            detector_weights=cfg.MODEL.TDSR.DETECTOR_WEIGHTS,
            sr_weights=cfg.MODEL.SR.WEIGHTS,
            sr_warm_start=cfg.MODEL.SR.WARM_START,
            **kwargs,
        )

    def _load_model(self, checkpoint):
        incompatible = super()._load_model(checkpoint)
        self._missing = set(incompatible.missing_keys)
        return incompatible

    def load(self, path: str, *args, **kwargs):
        self._missing = None
        loaded = super().load(path, *args, **kwargs)
        missing = set(self.model.state_dict()) if self._missing is None else self._missing
        self._missing = None
        parts = [p for p in ("detector.", "sr.") if any(k.startswith(p) for k in missing)]
        # What the checkpoint gave to those parts wins over their initial weights (a partial
        # checkpoint: it is put back after them).
        kept = {
            k: v.clone()
            for k, v in self.model.state_dict().items()
            if k.startswith(tuple(parts)) and k not in missing
        }
        if "detector." in parts:
            if self.detector_weights:
                load_detector_weights(self.model.detector, self.detector_weights)
            else:
                logger.warning(
                    "MODEL.TDSR.DETECTOR_WEIGHTS is empty: the frozen detector is untrained"
                )
        if "sr." in parts:
            load_initial_sr_weights(
                self.model.sr, weights=self.sr_weights, warm_start=self.sr_warm_start
            )
        if kept:
            self.model.load_state_dict(kept, strict=False)
        return loaded
