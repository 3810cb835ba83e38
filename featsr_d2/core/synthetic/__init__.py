"""A synthetic Tsinghua-Tencent 100K dataset: drawn traffic signs pasted onto photographs, written
in the TT100K release layout. It is the default data of the demo and of the tests, since TT100K
itself cannot be downloaded everywhere.

Python: :func:`generate_synthetic_tt100k`; command line:
``python -m featsr_d2.core.synthetic --help``.

Modules, each one step of the pipeline: ``painter`` (drawing primitives in unit coordinates),
``pictograms`` (the glyphs on the signs), ``signs`` (sign designs per category, rendered and cached
templates), ``backgrounds`` (photographs, procedural scenes, clutter), ``layout`` (sign sizes and
placements), ``compose`` (one image: appearance, blur, pasting), ``writer`` (the dataset on disk).
"""

from featsr_d2.core.synthetic.writer import format_summary, generate_synthetic_tt100k

__all__ = ["format_summary", "generate_synthetic_tt100k"]
