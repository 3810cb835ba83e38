"""FeatSR's supervision modes (``MODEL.FEATSR.SUPERVISION``), declared once: what each one trains
in stage 2 and from which targets. Validation, the ROI heads, the feature cache and the study read
this table; nothing else lists the modes. Part of the core: it imports nothing (config validation,
in the config layer above it, reads it).

=================  ===============  ============  ===============  ==================
mode               SR targets       content loss  discriminator D  generator G
=================  ===============  ============  ===============  ==================
``extractor``      SR extractor     yes           trained          trained (paper)
``naive``          backbone, 1.0x   yes           trained          trained (Table 4)
``none``           SR extractor     no            trained          trained (Table 4)
``detection_only`` none (no pairs)  no            frozen           trained
``identity``       none (no pairs)  no            frozen           frozen (the control)
=================  ===============  ============  ===============  ==================

``naive`` is Table 4's naive supervision: the plain backbone's features of the 1.0x image
(F^1.0), which the heads already read, so no extractor runs. ``none`` is Table 4's SR without
supervision: D still tells G's output from the extractor's targets. ``identity`` keeps G at the
identity it starts as (and D unused): the no-SR control that isolates the split into a small and a
large predictor.
"""

from dataclasses import dataclass

__all__ = ["SUPERVISIONS", "Supervision", "supervision"]


@dataclass(frozen=True)
class Supervision:
    """One row of the table above.

    Attributes:
        targets: where the SR pairs' targets come from: ``"extractor"`` (the SR target
            extractor's T^1.0), ``"backbone"`` (the backbone's F^1.0), or None (no SR pairs: no
            0.5x features, no content or adversarial loss).
        content: whether the content loss (eq. 4) trains G.
        discriminator: whether D trains (eq. 6) and its adversarial loss (eq. 5) trains G.
        generator: whether G trains at all (False: it stays at its identity initialization).
    """

    targets: str | None
    content: bool
    discriminator: bool
    generator: bool

    @property
    def pairs(self) -> bool:
        """Whether stage 2 makes SR pairs (the backbone's features of the 0.5x images)."""
        return self.targets is not None

    @property
    def needs_extractor(self) -> bool:
        """Whether stage 2 runs the SR target extractor."""
        return self.targets == "extractor"


SUPERVISIONS: dict[str, Supervision] = {
    "extractor": Supervision("extractor", content=True, discriminator=True, generator=True),
    "naive": Supervision("backbone", content=True, discriminator=True, generator=True),
    "none": Supervision("extractor", content=False, discriminator=True, generator=True),
    "detection_only": Supervision(None, content=False, discriminator=False, generator=True),
    "identity": Supervision(None, content=False, discriminator=False, generator=False),
}


def supervision(name: str) -> Supervision:
    """The row of ``name``; ValueError naming the modes for an unknown one."""
    if name not in SUPERVISIONS:
        raise ValueError(
            f"MODEL.FEATSR.SUPERVISION must be one of {tuple(SUPERVISIONS)}, got {name!r}"
        )
    return SUPERVISIONS[name]
