"""featsr_d2's MMDetection 3.x integration: it builds on :mod:`featsr_d2.core` and MMDetection,
mmcv and mmengine alone, and works where Detectron2 is not installed. Importing it registers every
component with MMDetection's registries (configs import it with ``custom_imports``). See
docs/MMDETECTION.md.
"""

from featsr_d2.mmdet import (
    datasets,  # noqa: F401  (registers FeatSRTT100KDataset)
    sr_networks,  # noqa: F401  (registers DBPN, CAJNN, RRDBNet, FeatSRBicubic)
    sr_preprocessor,  # noqa: F401  (registers FeatSRSuperResolvePreprocessor)
    tdsr,  # noqa: F401  (registers FeatSRTaskDrivenSR)
    transforms,  # noqa: F401  (registers FeatSRMakeLRImage, FeatSRPackLRDetInputs)
    tt100k_metric,  # noqa: F401  (registers FeatSRTT100KMetric)
)
