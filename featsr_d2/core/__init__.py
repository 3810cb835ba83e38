"""featsr_d2's core: the parts of FeatSR, TDSR and CAJNN that belong to no detection framework,
and the TT100K dataset's reader and official evaluation protocol.

Nothing here imports Detectron2, MMDetection, mmcv or mmengine (``tests/test_import_layers.py``
checks every module of this package and everything of featsr_d2 it imports, and imports them with
Detectron2 blocked); the Detectron2 integration (``featsr_d2.modeling``, ``featsr_d2.data``,
...) builds on it, and so does the MMDetection integration (``featsr_d2.mmdet``).
"""
