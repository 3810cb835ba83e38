from featsr_d2.core.tt100k_categories import TYPE45
from featsr_d2.data import builtin  # noqa: F401  (registers the builtin TT100K dataset names)
from featsr_d2.data.tt100k import (
    TT100KFormatError,
    load_tt100k_json,
    register_tt100k_instances,
    set_bad_record_policy,
)

__all__ = [
    "TT100KFormatError",
    "TYPE45",
    "load_tt100k_json",
    "register_tt100k_instances",
    "set_bad_record_policy",
]
