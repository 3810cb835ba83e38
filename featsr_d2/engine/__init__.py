from featsr_d2.engine.checkpoint import AtomicDetectionCheckpointer
from featsr_d2.engine.setup import get_featsr_cfg, setup
from featsr_d2.engine.trainer import FeatSRTrainer, build_featsr_evaluator

__all__ = [
    "AtomicDetectionCheckpointer",
    "FeatSRTrainer",
    "build_featsr_evaluator",
    "get_featsr_cfg",
    "setup",
]
