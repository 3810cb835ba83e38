"""FeatSR for MMDetection 3.x: the detector, RoI head, SR target extractor, optimizers and weights
of FeatSR (Noh et al., ICCV 2019) as mmdet / mmengine modules, built on featsr_d2's core.

Load it from a config with ``custom_imports=dict(imports=['featsr_d2.mmdet'],
allow_failed_imports=False)``; importing it registers every module below with mmdet's registries
(all names start with ``FeatSR``) and the ``featsr://`` checkpoint scheme with mmengine. It imports
featsr_d2's core and MMDetection, mmcv and mmengine, never Detectron2 nor featsr_d2's Detectron2
side (``tests/test_import_layers.py``), so it works where Detectron2 is not installed.
"""

from featsr_d2.mmdet import (
    extractor_geometry,  # noqa: F401  (the extractor's geometry; registers nothing)
    featsr_rcnn,  # noqa: F401  (registers FeatSRFasterRCNN)
    featsr_roi_head,  # noqa: F401  (registers FeatSRStandardRoIHead)
    mobilenet_v2_weights,  # noqa: F401  (registers the featsr:// checkpoint scheme)
    optim_wrapper,  # noqa: F401  (registers FeatSROptimWrapperConstructor, FeatSRDistributed...)
    target_extractor,  # noqa: F401  (the SR target extractor's walkers; registers nothing)
)
from featsr_d2.mmdet.enable_featsr import enable_featsr

__all__ = ["enable_featsr"]
