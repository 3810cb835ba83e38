"""Whether this process may read ``.pkl`` weights: Detectron2 reads them with ``pickle.load``,
which runs any code the file holds. Off unless the user opts in (the tools'
``--allow-pickle-weights``; deliberately not a config key: a config may come from others). Every
weight reader of featsr_d2 asks :func:`refuse_untrusted_pickle` first."""

from urllib.parse import urlparse

__all__ = [
    "ALLOW_PICKLE_FLAG",
    "WeightsFileError",
    "allow_pickle_weights",
    "is_pickle",
    "pickle_weights_allowed",
    "refuse_untrusted_pickle",
]

# The command-line flag of the tools that opts in to .pkl weights (engine.setup adds it).
ALLOW_PICKLE_FLAG = "--allow-pickle-weights"
_PICKLE_ALLOWED = False


class WeightsFileError(ValueError):
    """A weights file that cannot be used: refused, unreadable, or not holding the model's
    weights."""


def allow_pickle_weights(allowed: bool = True) -> None:
    """Let this process read ``.pkl`` weights (only for files from a source you trust, such as
    Detectron2's model zoo)."""
    global _PICKLE_ALLOWED
    _PICKLE_ALLOWED = bool(allowed)


def pickle_weights_allowed() -> bool:
    return _PICKLE_ALLOWED


def is_pickle(path: str) -> bool:
    return urlparse(path).path.endswith(".pkl") or path.endswith(".pkl")


def refuse_untrusted_pickle(path: str) -> None:
    """Raise :class:`WeightsFileError` for a ``.pkl`` ``path`` unless the process opted in."""
    if not path or not is_pickle(path) or _PICKLE_ALLOWED:
        return
    raise WeightsFileError(
        f"Refusing to load {path}: .pkl weights are Python pickles, and reading one runs any code "
        "it holds. If you trust where it comes from (Detectron2's model zoo, e.g. "
        f"detectron2://ImageNetPretrained/MSRA/R-50.pkl), add {ALLOW_PICKLE_FLAG} to the command "
        "line (in Python: featsr_d2.checkpoint.allow_pickle_weights()). Otherwise use a .pth "
        "checkpoint, which torch reads without running code."
    )
