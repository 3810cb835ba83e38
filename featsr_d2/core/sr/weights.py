"""The SR network's entries of a checkpoint, whichever framework or trainer wrote it.

:func:`sr_state_dict` accepts the SR network's own state dict; a checkpoint that wraps one under
``"model"`` (Detectron2's checkpointers: ``tools/train_sr.py``, ``tools/train_net.py``) or
``"state_dict"`` (mmengine's runner); and the state dict of a model that holds the network as a
part: TDSR (``sr.*``, beside ``detector.*``, in both frameworks) or an MMDetection detector whose
data pre-processor super-resolves (``data_preprocessor.sr.*``). Reading the file is the caller's
(each framework reads files its own way).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["SR_PREFIXES", "sr_state_dict"]

# The prefixes under which a model holds its SR network, most specific first.
SR_PREFIXES = ("data_preprocessor.sr.", "sr.")


def sr_state_dict(checkpoint: Any, source: str = "<checkpoint>") -> dict[str, Any]:
    """The SR network's state dict in a loaded checkpoint (see the module docstring).

    Raises:
        ValueError: naming ``source``, when it holds no state dict.
    """
    state = checkpoint
    for key in ("model", "state_dict"):
        if isinstance(state, Mapping) and isinstance(state.get(key), Mapping):
            state = state[key]
            break
    if not isinstance(state, Mapping):
        raise ValueError(f"{source} holds no state dict (a {type(state).__name__})")
    for prefix in SR_PREFIXES:
        if any(k.startswith(prefix) for k in state):  # a model holding the SR network
            return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    return dict(state)
