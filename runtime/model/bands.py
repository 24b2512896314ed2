"""The abstention band type and the band table a model carries; the scanner looks bands up here.

Fitting the table is calibration's job (`netorigin.calibration.bands`); this module only holds and reads it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

# The paper's operating point: c = 7/8 with o = 8 other-origin calibration patients.
PAPER_CONFIDENCE = 0.875


@dataclass(frozen=True)
class Band:
    """Uncertain iff lower < S < upper; `pi_inside` labelled calibration patients fell inside."""

    c: float
    pi_inside: int
    lower: float
    upper: float


@dataclass(frozen=True)
class BandTable:
    """All bands, c ascending; c = 0 (the empty band) first."""

    bands: tuple[Band, ...]
    n_pi: int
    n_other: int

    def at(self, c: float) -> Band:
        for band in self.bands:
            if abs(band.c - c) < 1e-9:
                return band
        raise KeyError(c)

    def by_k(self, k: int) -> Band:
        """The band allowed to hold k others (k = 0 is the empty band)."""
        return self.bands[k]

    @property
    def default_confidence(self) -> float:
        """The paper's operating point 0.875 when stored, else the stored c closest to it (larger on ties)."""
        return min((abs(b.c - PAPER_CONFIDENCE), -b.c, b.c) for b in self.bands)[2]

    def to_json(self) -> list[dict]:
        return [asdict(b) for b in self.bands]
