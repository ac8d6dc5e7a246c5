"""Engagement against satisfaction: the Pareto view of a weighting grid.

Every configuration (model × weighting, mean over seeds) is one point: x = click AUC
(engagement), y = like-among-clicks AUC (satisfaction, where popularity alone ranks poorly).
The static sweep of each model is drawn as a line; the points no other point beats on both
axes (the Pareto front, maximising both) are ringed. A strategy that sits inside the sweep's
line buys nothing a hand-tuned fixed weight would not (Xin et al., NeurIPS'22).

Example:
    >>> pareto_front([(0.70, 0.60), (0.72, 0.58), (0.69, 0.59)])
    [True, True, False]
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

X_METRIC, Y_METRIC = "click_auc", "like_among_clicks_auc"


def pareto_front(points: Sequence[tuple[float, float]]) -> list[bool]:
    """Which points are not dominated (another point at least as good on both axes, better on one).

    Args:
        points: N (x, y) pairs, both to maximise.

    Returns:
        N flags, True on the front.
    """
    return [not any(xj >= xi and yj >= yi and (xj > xi or yj > yi) for xj, yj in points)
            for xi, yi in points]


def pareto_data(configurations: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The plot's data as flat records (one per configuration with both metrics).

    Args:
        configurations: `recsys.experiments.grid.summarise_grid` rows.

    Returns:
        ``{"x": "click_auc", "y": "like_among_clicks_auc", "points": [{"model", "weighting",
        "label", "sweep_a", "kind" ("strategy" | "static_sweep"), "x", "x_std", "y", "y_std",
        "seeds", "pareto"}]}``.
    """
    points = []
    for row in configurations:
        x, y = row["metrics"][X_METRIC], row["metrics"][Y_METRIC]
        if x["mean"] is None or y["mean"] is None:
            continue
        points.append({"model": row["model"], "weighting": row["weighting"], "label": row["label"],
                       "sweep_a": row["sweep_a"], "kind": "strategy" if row["sweep_a"] is None else "static_sweep",
                       "x": x["mean"], "x_std": x["std"], "y": y["mean"], "y_std": y["std"], "seeds": x["n"]})
    for point, on_front in zip(points, pareto_front([(p["x"], p["y"]) for p in points])):
        point["pareto"] = on_front
    return {"x": X_METRIC, "y": Y_METRIC, "x_label": "click AUC (engagement)",
            "y_label": "like-among-clicks AUC (satisfaction)", "points": points}


def plot_pareto(data: dict[str, Any], path: str | Path, *, title: str = "") -> None:
    """Draw `pareto_data` output to a PNG (matplotlib, Agg backend)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from recsys.io import atomic_path

    points = data["points"]
    models = list(dict.fromkeys(p["model"] for p in points))
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(models)}
    fig, ax = plt.subplots(figsize=(8, 6), dpi=120)
    for model in models:
        sweep = sorted((p for p in points if p["model"] == model and p["kind"] == "static_sweep"),
                       key=lambda p: p["sweep_a"])
        if sweep:
            ax.plot([p["x"] for p in sweep], [p["y"] for p in sweep], "-", color=colours[model], alpha=0.6,
                    marker=".", label=f"{model}: static sweep")
            for p in sweep:
                ax.annotate(f"a={p['sweep_a']:g}", (p["x"], p["y"]), fontsize=7, alpha=0.7,
                            xytext=(3, -9), textcoords="offset points")
        strategies = [p for p in points if p["model"] == model and p["kind"] == "strategy"]
        if strategies:
            ax.errorbar([p["x"] for p in strategies], [p["y"] for p in strategies],
                        xerr=[p["x_std"] or 0 for p in strategies], yerr=[p["y_std"] or 0 for p in strategies],
                        fmt="o", color=colours[model], capsize=2, elinewidth=0.8, alpha=0.85,
                        label=f"{model}: strategies")
            for p in strategies:
                ax.annotate(p["weighting"], (p["x"], p["y"]), fontsize=7, xytext=(4, 3), textcoords="offset points")
    front = sorted((p for p in points if p["pareto"]), key=lambda p: p["x"])
    if front:
        ax.scatter([p["x"] for p in front], [p["y"] for p in front], s=160, facecolors="none",
                   edgecolors="black", linewidths=1.2, label="Pareto front", zorder=5)
        ax.plot([p["x"] for p in front], [p["y"] for p in front], ":", color="black", alpha=0.6, drawstyle="steps-pre")
    ax.set_xlabel(data["x_label"])
    ax.set_ylabel(data["y_label"])
    ax.set_title(title or "engagement vs satisfaction")
    ax.grid(alpha=0.3)
    if points:
        ax.legend(fontsize=8, loc="best")
    else:
        ax.text(0.5, 0.5, "no configuration has both metrics", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
