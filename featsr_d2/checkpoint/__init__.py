"""Everything about weights: reading and writing checkpoints, the converted weights behind the
``featsr://`` scheme (registered on Detectron2's ``PathManager`` when this package is imported),
the SR networks' and the TDSR detector's weights. Models are built without weights; these load
them.
"""

from featsr_d2.checkpoint.build import build_checkpointer
from featsr_d2.checkpoint.detection_checkpointer import AtomicDetectionCheckpointer
from featsr_d2.checkpoint.path_handler import FeatSRPathHandler, register_featsr_path_handler
from featsr_d2.checkpoint.pickle_weights import (
    ALLOW_PICKLE_FLAG,
    WeightsFileError,
    allow_pickle_weights,
    pickle_weights_allowed,
)
from featsr_d2.checkpoint.sr_weights import (
    load_initial_sr_weights,
    load_sr_weights,
    read_sr_state_dict,
)
from featsr_d2.checkpoint.tdsr_checkpointer import TDSRCheckpointer, load_detector_weights

register_featsr_path_handler()

__all__ = [
    "ALLOW_PICKLE_FLAG",
    "AtomicDetectionCheckpointer",
    "FeatSRPathHandler",
    "TDSRCheckpointer",
    "WeightsFileError",
    "allow_pickle_weights",
    "build_checkpointer",
    "load_detector_weights",
    "load_initial_sr_weights",
    "load_sr_weights",
    "pickle_weights_allowed",
    "read_sr_state_dict",
]
