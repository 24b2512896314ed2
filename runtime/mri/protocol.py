"""What seed 002 fixes about its inputs and tasks: the sequences, the common voxel grid, the network's image size,
the lesion classes and the seven model kinds (A-G)."""

from __future__ import annotations

from dataclasses import dataclass

# The six sequences in the seed's channel order; the first three are the unenhanced ones (Models B, D, G).
SEQUENCES = ("t2", "dwi_b800", "t1_pre", "arterial", "portal", "equilibrium")
UNENHANCED = SEQUENCES[:3]
SEQUENCE_NAMES = {"t2": "T2-weighted", "dwi_b800": "diffusion b=800", "t1_pre": "T1 pre-contrast",
                  "arterial": "late arterial", "portal": "portal venous", "equilibrium": "equilibrium"}
SPACING_MM = (0.7, 0.7, 7.0)  # every sequence is resampled to this grid (x, y, z), on the T2's geometry
IMAGE_SIZE = 299  # Inception-ResNet-v2's input

SEVEN_WAY = ("cyst", "hemangioma", "fnh", "other_benign", "hcc", "metastasis", "other_primary")
GROUPS = {"benign": SEVEN_WAY[:4], "malignant": SEVEN_WAY[4:]}
BINARY = tuple(GROUPS)
MALIGNANT = GROUPS["malignant"]


@dataclass(frozen=True)
class ModelKind:
    """One of the seed's models: which sequences, which classes, and whether clinical data joins the images."""

    name: str
    sequences: tuple[str, ...]
    classes: tuple[str, ...]
    clinical: bool

    def label_of(self, lesion_class: str) -> str | None:
        """A seven-way lesion class as this model's label (None: the patient is not in this model's task)."""
        if self.classes == BINARY:
            return next(group for group, members in GROUPS.items() if lesion_class in members)
        return lesion_class if lesion_class in self.classes else None


MODEL_KINDS = {kind.name: kind for kind in (
    ModelKind("A", SEQUENCES, SEVEN_WAY, False), ModelKind("B", UNENHANCED, SEVEN_WAY, False),
    ModelKind("C", SEQUENCES, BINARY, False), ModelKind("D", UNENHANCED, BINARY, False),
    ModelKind("E", SEQUENCES, MALIGNANT, False), ModelKind("F", SEQUENCES, MALIGNANT, True),
    ModelKind("G", UNENHANCED, MALIGNANT, True))}
