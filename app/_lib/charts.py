"""The app's Altair charts (interactive: hover for values, drag / scroll to pan and zoom)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd


def lines(frame: pd.DataFrame, *, x: str, y: str, color: str, x_title: str, y_title: str, color_title: str,
          zero_rule: bool = False, height: int = 280) -> alt.Chart:
    """One line per `color` value; a dashed rule at y = 0 when asked."""
    few = frame.groupby(color).size().max() < 30 if len(frame) else True  # a line of 1 point draws nothing
    base = alt.Chart(frame).mark_line(strokeWidth=1.8, point=bool(few)).encode(
        x=alt.X(f"{x}:Q", title=x_title, axis=alt.Axis(tickMinStep=1, format="d") if x == "epoch" else alt.Axis()),
        y=alt.Y(f"{y}:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=alt.Color(f"{color}:N", title=color_title),
        tooltip=[alt.Tooltip(f"{color}:N", title=color_title), alt.Tooltip(f"{x}:Q", title=x_title),
                 alt.Tooltip(f"{y}:Q", title=y_title, format=".4f")],
    )
    chart = base
    if zero_rule:
        chart = alt.layer(base, alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="grey", strokeDash=[4, 4])
                          .encode(y="y:Q"))
    return chart.properties(height=height).interactive(bind_y=False)


def faceted_lines(frame: pd.DataFrame, *, facet: str, facet_title: str, y_title: str, columns: int = 3
                  ) -> alt.Chart:
    """`lines` of (step, series, value) in small multiples, one per `facet` value."""
    return alt.Chart(frame).mark_line(strokeWidth=1.5).encode(
        x=alt.X("step:Q", title="step"), y=alt.Y("value:Q", title=y_title),
        color=alt.Color("series:N", title="task"),
        tooltip=[f"{facet}:N", "series:N", "step:Q", alt.Tooltip("value:Q", format=".4f")],
    ).properties(width=260, height=170).facet(facet=alt.Facet(f"{facet}:N", title=facet_title), columns=columns
                                              ).resolve_scale(y="independent")


def gates(frame: pd.DataFrame) -> alt.Chart:
    """Mean gate weight per expert, grouped by task."""
    return alt.Chart(frame).mark_bar().encode(
        x=alt.X("expert:N", title=None), xOffset="task:N",
        y=alt.Y("weight:Q", title="mean gate weight (late training)"),
        color=alt.Color("task:N", title="task"),
        tooltip=["task:N", "expert:N", alt.Tooltip("weight:Q", format=".3f")],
    ).properties(height=260)


def pareto(data: dict[str, Any]) -> alt.Chart:
    """Engagement (x) against satisfaction (y): static sweeps as lines, strategies as points,
    the Pareto front ringed."""
    pts = pd.DataFrame(data["points"])
    x_title, y_title = data.get("x_label", "engagement"), data.get("y_label", "satisfaction")
    tooltip = ["model:N", "label:N", alt.Tooltip("x:Q", title=x_title, format=".4f"),
               alt.Tooltip("y:Q", title=y_title, format=".4f"), "seeds:Q", "pareto:N"]
    enc = {"x": alt.X("x:Q", title=x_title, scale=alt.Scale(zero=False, padding=24)),
           "y": alt.Y("y:Q", title=y_title, scale=alt.Scale(zero=False, padding=24)),
           "color": alt.Color("model:N", title="model")}
    layers = []
    sweep = pts[pts["kind"] == "static_sweep"]
    if len(sweep):
        layers.append(alt.Chart(sweep).mark_line(point=True, opacity=0.6, strokeDash=[3, 2])
                      .encode(**enc, order="sweep_a:Q", tooltip=tooltip))
    strat = pts[pts["kind"] == "strategy"]
    if len(strat):
        layers.append(alt.Chart(strat).mark_point(filled=True, size=90).encode(**enc, shape=alt.Shape("weighting:N"),
                                                                                 tooltip=tooltip))
        layers.append(alt.Chart(strat).mark_text(dx=6, dy=-6, align="left", fontSize=10)
                      .encode(x="x:Q", y="y:Q", text="weighting:N"))
    front = pts[pts["pareto"].astype(bool)]
    if len(front):
        layers.append(alt.Chart(front).mark_point(size=320, color="black", strokeWidth=1.4)
                      .encode(x="x:Q", y="y:Q", tooltip=tooltip))
    return alt.layer(*layers).properties(height=420).interactive()


def coldstart(points: pd.DataFrame, warm: float | None, *, title: str, x_label: str, bands: bool = True,
              oracle: float | None = None) -> alt.Chart:
    """The metric against support size K: one line per method (with its 95% band when `bands`),
    the ranker on warm users dashed, the same-user oracle dotted."""
    enc_x = alt.X("k:Q", title=x_label, scale=alt.Scale(type="symlog"), axis=alt.Axis(values=sorted(points["k"].unique().tolist())))
    line = alt.Chart(points).mark_line(point=True).encode(
        x=enc_x, y=alt.Y("value:Q", title=title, scale=alt.Scale(zero=False)),
        color=alt.Color("method:N", title="method"),
        tooltip=["method:N", "k:Q", alt.Tooltip("value:Q", format=".4f"), alt.Tooltip("lo:Q", format=".4f"),
                 alt.Tooltip("hi:Q", format=".4f")])
    layers = [line]  # first, so the legend shows lines
    banded = points.dropna(subset=["lo", "hi"]) if bands else points.iloc[:0]
    if len(banded):
        layers.append(alt.Chart(banded).mark_area(opacity=0.1).encode(x=enc_x, y="lo:Q", y2="hi:Q", color="method:N"))
    for name, value, label, style in (("warm", warm, "warm users", {"color": "black", "strokeDash": [6, 4]}),
                                      ("oracle", oracle, "oracle: the same users, trained on",
                                       {"color": "grey", "strokeDash": [2, 3], "strokeWidth": 2})):
        if value is not None:
            layers.append(alt.Chart(pd.DataFrame({name: [value], "label": [label]}))
                          .mark_rule(**style).encode(y=f"{name}:Q", tooltip=["label:N", f"{name}:Q"]))
    return alt.layer(*layers).properties(height=360).interactive(bind_y=False)


def affinity(frame: pd.DataFrame) -> alt.Chart:
    """Heatmap: what task i (row) gains from being trained with j (column); blue helps, red hurts."""
    frame = frame.dropna(subset=["gain"])
    limit = max(1e-6, float(frame["gain"].abs().max())) if len(frame) else 1.0
    base = alt.Chart(frame).encode(x=alt.X("partner:N", title=None, sort=None), y=alt.Y("metric:N", title=None, sort=None))
    rect = base.mark_rect().encode(
        color=alt.Color("gain:Q", title="gain", scale=alt.Scale(scheme="redblue", domain=[-limit, limit])),
        tooltip=["metric:N", "partner:N", alt.Tooltip("gain:Q", format="+.4f"), alt.Tooltip("std:Q", format=".4f")])
    text = base.mark_text(fontSize=12).encode(text=alt.Text("gain:Q", format="+.4f"))
    return alt.layer(rect, text).properties(height=max(120, 48 * frame["metric"].nunique()))


def scorer_bars(frame: pd.DataFrame) -> alt.Chart:
    """Grouped bars: one metric per task, the model beside its baselines."""
    long = frame.melt(id_vars=["task", "metric"], var_name="scorer", value_name="value").dropna()
    return alt.Chart(long).mark_bar().encode(
        x=alt.X("task:N", title=None), xOffset="scorer:N", y=alt.Y("value:Q", title=None),
        color=alt.Color("scorer:N", title="scorer"),
        tooltip=["task:N", "metric:N", "scorer:N", alt.Tooltip("value:Q", format=".4f")],
    ).properties(height=260)


def contributions(frame: pd.DataFrame, weights: dict[str, float]) -> alt.Chart:
    """Stacked bars: each task's weighted share of the blended score, per recommended title."""
    from _lib.logic import scaled

    total = sum(w for w in weights.values() if w > 0) or 1.0
    rows = []
    for _, r in frame.iterrows():
        label = f"{int(r['rank'])}. {r['title']}"
        for t, w in weights.items():
            if w > 0 and t in r:
                rows.append({"title": label, "task": t, "share": w * scaled(t, float(r[t])) / total})
    return alt.Chart(pd.DataFrame(rows)).mark_bar().encode(
        y=alt.Y("title:N", sort=None, title=None, axis=alt.Axis(labelLimit=320, labelOverlap=False)),
        x=alt.X("share:Q", title="blended score (weighted task shares)"),
        color=alt.Color("task:N", title="task"), tooltip=["title:N", "task:N", alt.Tooltip("share:Q", format=".3f")],
    ).properties(height=max(160, 26 * len(frame)))
