"""Tsinghua-Tencent 100K category sets."""

# The official evaluation classes ("type45" in the TT100K release): the 45 sign types with more than
# 100 instances. FeatSR (Noh et al., 2019) trains and evaluates on these.
TYPE45 = (
    "i2", "i4", "i5", "il100", "il60", "il80", "io", "ip", "p10", "p11", "p12", "p19", "p23", "p26",
    "p27", "p3", "p5", "p6", "pg", "ph4", "ph4.5", "ph5", "pl100", "pl120", "pl20", "pl30", "pl40",
    "pl5", "pl50", "pl60", "pl70", "pl80", "pm20", "pm30", "pm55", "pn", "pne", "po", "pr40", "w13",
    "w32", "w55", "w57", "w59", "wo",
)  # fmt: skip

# The demo's classes: TT100K's ten most frequent types in its training split. Three are speed
# limits told apart only by their digits (pl40, pl50, pl80), which a small sign barely resolves.
DEMO_CATEGORIES = ("pn", "pne", "i5", "p11", "pl40", "po", "pl50", "io", "pl80", "p26")

# Names accepted wherever a class set is chosen.
CLASS_SETS = ("type45", "all")

# Object size bins of the official protocol, by the long side of the box in pixels: [low, high).
SIZE_BINS = {"all": (0, 400), "small": (0, 32), "medium": (32, 96), "large": (96, 400)}
