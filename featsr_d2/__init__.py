"""featsr_d2: super-resolution for small and low-resolution object detection in Detectron2.

Importing the package registers every component (datasets, backbones, heads, meta-architectures)
with Detectron2's registries. Call :func:`add_featsr_config` on a config before merging a
featsr_d2 YAML; :func:`enable_featsr` turns a Detectron2 Faster R-CNN config into FeatSR's.

:mod:`featsr_d2.core` belongs to no framework (G, D and their losses, the small/large split, the
SR target extractor's layers, the SR networks, degradations and ops): where Detectron2 is not
installed, importing the package gives the core alone, for another framework's integration.
"""

import importlib.util

__version__ = "0.1.0"

from featsr_d2.core.layers import build_info, has_compiled_ops

__all__ = ["build_info", "has_compiled_ops", "__version__"]

if importlib.util.find_spec("detectron2") is not None:  # the Detectron2 integration
    from featsr_d2 import (
        checkpoint,  # noqa: F401  (registers the featsr:// weights scheme)
        data,  # noqa: F401  (registers the builtin TT100K datasets)
        modeling,  # noqa: F401  (registers backbones)
    )
    from featsr_d2.config import add_featsr_config, enable_featsr

    __all__ += ["add_featsr_config", "enable_featsr"]
