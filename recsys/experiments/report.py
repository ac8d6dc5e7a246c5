"""Small formatting helpers shared by the experiment reports (Markdown tables, numbers)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def fmt(value: float | None, digits: int = 4) -> str:
    """A number with `digits` decimals; ``–`` for None."""
    return "–" if value is None else f"{value:.{digits}f}"


def fmt_mean_std(stats: dict[str, Any], digits: int = 4) -> str:
    """``0.7412 ± 0.0021`` from ``{"mean", "std"}`` (the mean alone when std is None)."""
    if stats["mean"] is None:
        return "–"
    cell = f"{stats['mean']:.{digits}f}"
    return cell if stats["std"] is None else f"{cell} ± {stats['std']:.{digits}f}"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table; the first column left-aligned, the others right."""
    align = [":--"] + ["--:"] * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)
