"""A synthetic Tsinghua-Tencent 100K dataset: drawn traffic signs pasted onto photographs, written
in the TT100K release layout. It is the default data of the demo and of the tests, since TT100K
itself cannot be downloaded everywhere.

Python: :func:`generate_synthetic_tt100k`; command line:
``python -m featsr_d2.data.synthetic --help``.
"""

from featsr_d2.data.synthetic.generator import format_summary, generate_synthetic_tt100k

__all__ = ["format_summary", "generate_synthetic_tt100k"]
