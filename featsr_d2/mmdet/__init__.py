"""featsr_d2's MMDetection 3.x integration: FeatSR (the detector, RoI head, SR target extractor,
optimizers and weights), TDSR and the SR pre-processor, the TT100K datasets and metric, as mmdet /
mmengine modules built on :mod:`featsr_d2.core`. See docs/MMDETECTION.md.

Load it from a config with ``custom_imports=dict(imports=['featsr_d2.mmdet'],
allow_failed_imports=False)``; importing it registers every module below with mmdet's registries
(all names start with ``FeatSR`` or name the paper's network) and the ``featsr://`` checkpoint
scheme with mmengine. It imports featsr_d2's core and MMDetection, mmcv and mmengine, never
Detectron2 nor featsr_d2's Detectron2 side (``tests/test_import_layers.py``), so it works where
Detectron2 is not installed.
"""

from featsr_d2.mmdet import (
    datasets,  # noqa: F401  (registers FeatSRTT100KDataset)
    extractor_geometry,  # noqa: F401  (the extractor's geometry; registers nothing)
    featsr_rcnn,  # noqa: F401  (registers FeatSRFasterRCNN)
    featsr_roi_head,  # noqa: F401  (registers FeatSRStandardRoIHead)
    mobilenet_v2_weights,  # noqa: F401  (registers the featsr:// checkpoint scheme)
    optim_wrapper,  # noqa: F401  (registers FeatSROptimWrapperConstructor, FeatSRDistributed...)
    sr_networks,  # noqa: F401  (registers DBPN, CAJNN, RRDBNet, FeatSRBicubic)
    sr_preprocessor,  # noqa: F401  (registers FeatSRSuperResolvePreprocessor)
    target_extractor,  # noqa: F401  (the SR target extractor's walkers; registers nothing)
    tdsr,  # noqa: F401  (registers FeatSRTaskDrivenSR)
    transforms,  # noqa: F401  (registers FeatSRMakeLRImage, FeatSRPackLRDetInputs)
    tt100k_metric,  # noqa: F401  (registers FeatSRTT100KMetric)
)
from featsr_d2.mmdet.enable_featsr import enable_featsr

__all__ = ["enable_featsr"]
