"""Confidence curves as in the paper's Figures 4 and 5: correct / other class / uncertain over c."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from netorigin.runtime.slide.verdict import PANCREAS, SMALL_INTESTINE, UNCERTAIN  # noqa: E402

TITLES = {PANCREAS: "true pancreas", SMALL_INTESTINE: "true small intestine", "other": "true other origin"}
STYLES = {PANCREAS: "-", SMALL_INTESTINE: "--", UNCERTAIN: "-."}


def plot_curves(result: dict, path: str | Path, title: str = "") -> Path:
    """One panel per true class; x = confidence c, y = fraction of that class's patients."""
    c = result["c"]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8), sharey=True)
    for ax, (truth, lines) in zip(axes, result["curves"].items()):
        for predicted, values in lines.items():
            ax.plot(c, values, STYLES[predicted], marker="o", ms=3, label=f"called {predicted}")
        ax.set_title(TITLES[truth])
        ax.set_xlabel("confidence c = k/o")
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("fraction of patients")
    axes[-1].legend(loc="best", fontsize=8)
    fig.suptitle(title or f"{result['protocol']} ({result['head']}, seed {result['seed']})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
