"""Access to the compiled extension featsr_d2._C, with a fallback when it was not built."""

import logging
from functools import cache

logger = logging.getLogger(__name__)


@cache
def _load():
    try:
        from featsr_d2 import _C
    except ImportError as e:
        logger.warning(
            "featsr_d2._C is not available (%s); using the reference implementations. "
            "Build it with `pip install --no-build-isolation -e .`.",
            e,
        )
        return None
    return _C


def has_compiled_ops() -> bool:
    """True when featsr_d2._C was built and imports."""
    return _load() is not None


def build_info() -> dict:
    """How the extension was built: ``{"compiled", "has_cuda", "compiler", "cuda"}``."""
    ext = _load()
    if ext is None:
        return {"compiled": False, "has_cuda": False, "compiler": None, "cuda": None}
    return {
        "compiled": True,
        "has_cuda": bool(ext.has_cuda()),
        "compiler": ext.compiler_version(),
        "cuda": ext.cuda_version() or None,
    }
