"""Evaluation: the official Tsinghua-Tencent 100K protocol and its Detectron2 evaluator.

The names are resolved on first access (PEP 562) rather than imported here, so that the command
line ``python -m featsr_d2.evaluation.tt100k`` does not import that module twice (runpy warns when
the package has already imported the module it is about to run as ``__main__``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from featsr_d2.evaluation.tt100k import evaluate_tt100k
    from featsr_d2.evaluation.tt100k_evaluator import TT100KEvaluator

__all__ = ["TT100KEvaluator", "evaluate_tt100k"]

_EXPORTS = {
    "TT100KEvaluator": "featsr_d2.evaluation.tt100k_evaluator",
    "evaluate_tt100k": "featsr_d2.evaluation.tt100k",
}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
