"""Reading checkpoints in MMDetection runs: mmengine's own (for resuming and ``load_from``) and the
SR and detector weights that TDSR and the SR pre-processor start from.

PyTorch >= 2.6 reads files with ``torch.load(weights_only=True)`` by default, which constructs
nothing but tensors and plain containers, so it refuses the checkpoints mmengine 0.10 writes: their
``message_hub`` holds mmengine's ``HistoryBuffer`` objects, with numpy arrays and the buffer's
statistics methods, pickled as ``getattr(HistoryBuffer, "mean")``. ``--resume`` then fails with an
``UnpicklingError``. Allowing ``getattr`` in PyTorch's weights-only unpickler would let a file
reach any attribute of any allowed object (and from there run code), so this module reads them
with its own restricted unpickler instead (:func:`load_checkpoint_file`): it constructs tensors,
numpy arrays, ``collections`` containers and ``HistoryBuffer`` objects, and resolves ``getattr``
only for ``HistoryBuffer``'s statistics methods; any other global in a file is refused, naming
it. :func:`mmengine_checkpoints_loadable` makes mmengine's loader of local files use it for the
duration of a ``with`` block (``tools/mmdet_train.py`` and ``tools/mmdet_test.py`` run the runner
inside one); other schemes (``http://``, ``open-mmlab://``) keep mmengine's loaders, which read
with ``weights_only=True``.

:func:`load_sr_weights` and :func:`load_detector_weights` load strictly, naming the file and the
keys that do not match.
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import functools
import os.path as osp
import pickle
import types
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import torch
from mmengine.logging import HistoryBuffer, MMLogger
from mmengine.runner.checkpoint import CheckpointLoader, _load_checkpoint
from torch import nn

from featsr_d2.core.sr.weights import sr_state_dict

__all__ = [
    "CheckpointRefusedError",
    "load_checkpoint_file",
    "load_detector_weights",
    "load_sr_weights",
    "mmengine_checkpoints_loadable",
    "read_checkpoint",
]


class CheckpointRefusedError(pickle.UnpicklingError):
    """A checkpoint that would construct something besides tensors, arrays and mmengine's
    history buffers."""


def _history_buffer_method(owner: Any, name: str) -> Callable:
    """``getattr`` as a checkpoint may use it: ``HistoryBuffer``'s statistics methods only."""
    if owner is HistoryBuffer and name in ("min", "max", "mean", "current"):
        return getattr(HistoryBuffer, name)
    raise CheckpointRefusedError(
        f"the file asks for getattr({owner!r}, {name!r}); only HistoryBuffer's statistics "
        "methods are resolved"
    )


@functools.cache
def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object, for every global an mmengine checkpoint holds."""
    allowed: dict[tuple[str, str], Any] = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("collections", "Counter"): collections.Counter,
        ("collections", "defaultdict"): collections.defaultdict,
        ("_codecs", "encode"): codecs.encode,
        ("torch._utils", "_rebuild_tensor_v2"): torch._utils._rebuild_tensor_v2,
        ("torch._utils", "_rebuild_parameter"): torch._utils._rebuild_parameter,
        ("torch", "Size"): torch.Size,
        ("torch", "device"): torch.device,
        ("mmengine.logging.history_buffer", "HistoryBuffer"): HistoryBuffer,
        ("__builtin__", "getattr"): _history_buffer_method,
        ("builtins", "getattr"): _history_buffer_method,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray  # numpy 1
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # written by numpy 1 or 2
        allowed[(module, "_reconstruct")] = multiarray._reconstruct
        allowed[(module, "scalar")] = multiarray.scalar
    for name in ("float64", "float32", "float16", "int64", "int32", "int8", "uint8", "bool"):
        dtype_class = type(np.dtype(name))
        allowed[(dtype_class.__module__, dtype_class.__name__)] = dtype_class
    return allowed


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the globals of :func:`_allowed_globals` (torch's storages are resolved by
    ``torch.load`` before it asks)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _allowed_globals()[(module, name)]
        except KeyError:
            raise CheckpointRefusedError(
                f"refused global {module}.{name}: a checkpoint is read as tensors, numpy arrays "
                "and mmengine's history buffers only (anything else could run code the file "
                "holds)"
            ) from None


_RESTRICTED_PICKLE = types.SimpleNamespace(
    __name__="featsr_d2_restricted_pickle",
    Unpickler=_RestrictedUnpickler,
    load=lambda f, **kwargs: _RestrictedUnpickler(f, **kwargs).load(),
)


def load_checkpoint_file(path: str, map_location: Any = "cpu") -> Any:
    """The object in the local checkpoint file ``path``, read by the restricted unpickler (see the
    module docstring).

    Raises:
        FileNotFoundError: no such file.
        CheckpointRefusedError: the file holds another global (named in the message).
    """
    path = osp.expanduser(path)
    if not osp.isfile(path):
        raise FileNotFoundError(f"{path} can not be found.")
    try:
        return torch.load(
            path, map_location=map_location, pickle_module=_RESTRICTED_PICKLE, weights_only=False
        )
    except CheckpointRefusedError as e:
        raise CheckpointRefusedError(f"{path}: {e}") from None


def load_from_local_restricted(filename: str, map_location: Any = None) -> Any:
    """mmengine's loader of local files (its log names it "local_restricted"):
    :func:`load_checkpoint_file`."""
    return load_checkpoint_file(filename, map_location)


@contextlib.contextmanager
def mmengine_checkpoints_loadable() -> Iterator[None]:
    """Within the block, mmengine reads local checkpoints with :func:`load_checkpoint_file`."""
    original = CheckpointLoader._get_checkpoint_loader("")
    CheckpointLoader.register_scheme("", load_from_local_restricted, force=True)
    try:
        yield
    finally:
        CheckpointLoader.register_scheme("", original, force=True)


def read_checkpoint(path: str) -> Any:
    """The object in a checkpoint file (local, ``http(s)://``, ``open-mmlab://``, ...: mmengine's
    loaders, local files read by :func:`load_checkpoint_file`).

    Raises:
        FileNotFoundError: a local file that does not exist.
        ValueError: naming the file, when it cannot be read as a checkpoint.
    """
    try:
        with mmengine_checkpoints_loadable():
            return _load_checkpoint(path, map_location="cpu")
    except FileNotFoundError:
        raise
    except Exception as e:  # torch.load raises anything on an empty, foreign or refused file
        reason = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
        raise ValueError(
            f"{path}: not a readable checkpoint ({type(e).__name__}: {reason}). Is it empty or "
            "truncated, or a file of another kind?"
        ) from e


def _load_strict(module: nn.Module, state: Mapping[str, Any], path: str, what: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mis_shaped = sorted(
        k
        for k in set(own) & set(state)
        if hasattr(state[k], "shape") and tuple(state[k].shape) != tuple(own[k].shape)
    )
    if missing or unexpected or mis_shaped:
        raise ValueError(
            f"{path} does not hold the weights of this {what} ({type(module).__name__}): "
            f"{len(missing)} missing (e.g. {missing[:3]}), {len(unexpected)} unexpected (e.g. "
            f"{unexpected[:3]}), {len(mis_shaped)} of another shape (e.g. {mis_shaped[:3]}). Is "
            f"the {what}'s config the one the file was trained with?"
        )
    module.load_state_dict(dict(state), strict=True)
    MMLogger.get_current_instance().info("Loaded the %s weights %s", what, path)


def load_sr_weights(network: nn.Module, path: str) -> None:
    """Load an SR network's weights strictly: its own state dict, or the SR part of a checkpoint
    of either framework (:func:`featsr_d2.core.sr.weights.sr_state_dict`)."""
    _load_strict(network, sr_state_dict(read_checkpoint(path), path), path, "SR network")


def load_detector_weights(detector: nn.Module, path: str) -> None:
    """Load a detector's weights strictly: an MMDetection checkpoint of the detector
    (``state_dict``), or the detector of a TDSR checkpoint (``detector.*``)."""
    checkpoint = read_checkpoint(path)
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds no state dict (a {type(checkpoint).__name__})")
    if any(k.startswith("detector.") for k in state):  # a TDSR checkpoint: its detector
        state = {k[len("detector.") :]: v for k, v in state.items() if k.startswith("detector.")}
    _load_strict(detector, state, path, "detector")
