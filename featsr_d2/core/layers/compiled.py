"""Access to the compiled extension featsr_d2._C, with a fallback when it was not built."""

import logging
from functools import cache

import torch

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


@cache
def _has_cuda_kernels() -> bool:
    ext = _load()
    return ext is not None and bool(ext.has_cuda())


@cache
def _warn_no_cuda_kernels() -> None:
    logger.warning(
        "featsr_d2._C was built without CUDA kernels; CUDA tensors use the reference "
        "implementations. Rebuild with FORCE_CUDA=1 (or on a machine with a GPU)."
    )


@torch.compiler.assume_constant_result  # torch.compile evaluates it once, eagerly
def compiled_for(device: torch.device) -> bool:
    """True when featsr_d2's compiled kernels run on ``device``.

    CPU kernels exist whenever ``_C`` was built; CUDA kernels only when it was built with CUDA
    (``build_info()["has_cuda"]``). Says once when CUDA tensors meet a CPU-only build.
    """
    if not has_compiled_ops():
        return False
    if device.type == "cpu":
        return True
    if device.type == "cuda":
        if _has_cuda_kernels():
            return True
        _warn_no_cuda_kernels()
    return False
