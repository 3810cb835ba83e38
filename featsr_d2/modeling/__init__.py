from featsr_d2.modeling import backbone  # noqa: F401  (registers backbones)
