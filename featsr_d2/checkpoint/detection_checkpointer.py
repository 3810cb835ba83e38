"""featsr_d2's detection checkpointer: Detectron2's, with atomic writes and careful reads.

- Writes: checkpoints and the ``last_checkpoint`` tag are written atomically; a save that dies
  part-way leaves the previous files, and the temporary files of killed saves are removed when the
  next run's checkpointer starts (:func:`featsr_d2.utils.file_io.remove_stale_temporaries`).
- ``.pkl`` weights are refused unless the process opted in (:func:`allow_pickle_weights`, the
  tools' ``--allow-pickle-weights``): Detectron2 reads them with ``pickle.load``, which runs any
  code the file holds. ``.pth`` files are read by ``torch.load`` with ``weights_only=True``, said
  explicitly (torch before 2.6 defaults to False), which constructs tensors and plain containers
  only.
- A file that is not a checkpoint (empty, truncated, text, another format) raises
  :class:`WeightsFileError` naming the file, instead of a bare ``EOFError`` or unpickling error.
- ``require_all_weights=True`` (evaluation): no weights, or weights that leave model parameters
  missing or of another shape (a checkpoint of another architecture), raise
  :class:`WeightsFileError` with the counts and a few of the keys, instead of evaluating a partly
  random model.
- ``require_weights=(prefixes, why)`` (training that freezes parts, e.g. FeatSR's stages 2 and 3):
  the same for the weights under those key prefixes only; ``why`` ends the message.
"""

import logging
import os
from collections.abc import Sequence

import torch
from detectron2.checkpoint import DetectionCheckpointer

from featsr_d2.checkpoint.converted_weights import cache_dir
from featsr_d2.checkpoint.pickle_weights import WeightsFileError, refuse_untrusted_pickle
from featsr_d2.utils.file_io import atomic_write, atomic_write_text, remove_stale_temporaries

__all__ = ["AtomicDetectionCheckpointer"]

logger = logging.getLogger(__name__)


def _cache_hint(filename: str) -> str:
    cache = os.path.abspath(cache_dir())
    if os.path.abspath(filename).startswith(cache + os.sep):
        return (
            f" It is featsr_d2's converted-weights cache: delete it (rm {filename}) and the next "
            "run converts it again."
        )
    return ""


class AtomicDetectionCheckpointer(DetectionCheckpointer):
    """Same files as :class:`DetectionCheckpointer`; a crash mid-save leaves the previous ones.
    See the module docstring for what it refuses when reading."""

    def __init__(
        self,
        model,
        save_dir: str = "",
        *,
        require_all_weights: bool = False,
        require_weights: tuple[Sequence[str], str] | None = None,
        **kwargs,
    ):
        """
        Args:
            require_all_weights: raise unless every model parameter and buffer is loaded with its
                shape (evaluation of a given checkpoint).
            require_weights: (key prefixes, reason): raise unless every weight under those
                prefixes is loaded with its shape; the reason says why they are needed.
            model, save_dir, kwargs: as for :class:`DetectionCheckpointer`.
        """
        super().__init__(model, save_dir, **kwargs)
        self.require_all_weights = require_all_weights
        self.require_weights = require_weights
        self._loading = ""
        if self.save_dir and self.save_to_disk:
            remove_stale_temporaries(self.save_dir)

    def save(self, name: str, **kwargs) -> None:
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        data.update({key: obj.state_dict() for key, obj in self.checkpointables.items()})
        data.update(kwargs)
        basename = f"{name}.pth"
        save_file = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", save_file)
        atomic_write(save_file, lambda f: torch.save(data, f), binary=True)
        self.tag_last_checkpoint(basename)

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        atomic_write_text(os.path.join(self.save_dir, "last_checkpoint"), last_filename_basename)

    def load(self, path: str, *args, **kwargs):
        if not path and self.require_all_weights:
            raise WeightsFileError(
                "No weights to evaluate: set MODEL.WEIGHTS to a checkpoint of this config's model "
                "(or --resume with a checkpoint in OUTPUT_DIR)."
            )
        refuse_untrusted_pickle(path)  # before Detectron2 fetches it
        self._loading = path
        try:
            return super().load(path, *args, **kwargs)
        finally:
            self._loading = ""
            self._parsed_url_during_load = None  # Detectron2 leaves it set when a load raises

    def _load_file(self, filename: str):
        refuse_untrusted_pickle(filename)
        if os.path.isfile(filename) and os.path.getsize(filename) == 0:
            raise WeightsFileError(f"{filename}: the weights file is empty.{_cache_hint(filename)}")
        try:
            loaded = super()._load_file(filename)
        except Exception as e:  # torch.load's readers raise anything on garbage (EOFError, ...)
            reason = str(e).strip().splitlines()[0] if str(e).strip() else ""
            raise WeightsFileError(
                f"{filename}: not a readable checkpoint ({type(e).__name__}: {reason[:300]}). "
                "Is it truncated (a killed copy or download), or a file of another kind?"
                + _cache_hint(filename)
            ) from e
        model = loaded.get("model") if isinstance(loaded, dict) else None
        if not isinstance(model, dict):
            raise WeightsFileError(
                f"{filename}: holds no state dict of weights (got {type(loaded).__name__})."
            )
        return loaded

    def _torch_load(self, f: str):
        # Explicit: torch < 2.6 defaults to weights_only=False, which runs code a file holds.
        return torch.load(f, map_location=torch.device("cpu"), weights_only=True)

    def _log_incompatible_keys(self, incompatible) -> None:
        super()._log_incompatible_keys(incompatible)
        if self.require_all_weights:
            prefixes, why = (
                ("",),
                (
                    "It is not a checkpoint of this config's architecture (or of its number of "
                    "classes); evaluating it would score a partly random model."
                ),
            )
            action = "evaluate"
        elif self.require_weights is not None:
            (prefixes, why), action = self.require_weights, "train"
        else:
            return
        prefixes = tuple(prefixes)
        wrong = [w for w in incompatible.incorrect_shapes if w[0].startswith(prefixes)]
        wrong_keys = {k for k, _, _ in wrong}
        missing = [
            k for k in incompatible.missing_keys if k.startswith(prefixes) and k not in wrong_keys
        ]
        if not missing and not wrong:
            return
        total = sum(k.startswith(prefixes) for k in self.model.state_dict())
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} of the model's {total} weights"
                + ("" if prefixes == ("",) else f" under {', '.join(prefixes)}")
                + f" are missing ({missing[:5]})"
            )
        if wrong:
            shapes = ", ".join(
                f"{k}: {tuple(c)} in the file, {tuple(m)} in the model" for k, c, m in wrong[:3]
            )
            parts.append(f"{len(wrong)} have another shape ({shapes})")
        raise WeightsFileError(
            f"Refusing to {action} with {self._loading or 'these weights'}: "
            + "; ".join(parts)
            + ". "
            + why
        )
