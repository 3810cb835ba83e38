"""Evaluation: the official Tsinghua-Tencent 100K protocol and its Detectron2 evaluator, SR
quality, and detection on low-resolution images."""

from featsr_d2.core.tt100k_protocol import evaluate_tt100k
from featsr_d2.evaluation.tt100k_evaluator import TT100KEvaluator

__all__ = ["TT100KEvaluator", "evaluate_tt100k"]
