from featsr_d2.layers.compiled import build_info, has_compiled_ops

__all__ = ["build_info", "has_compiled_ops"]
