from featsr_d2.engine.setup import argument_parser, cpu_without_cuda, setup
from featsr_d2.engine.tdsr_trainer import TDSRTrainer
from featsr_d2.engine.trainer import FeatSRTrainer, build_featsr_evaluator
from featsr_d2.engine.trainer_choice import build_trainer, trainer_class

__all__ = [
    "FeatSRTrainer",
    "TDSRTrainer",
    "argument_parser",
    "build_featsr_evaluator",
    "build_trainer",
    "cpu_without_cuda",
    "setup",
    "trainer_class",
]
