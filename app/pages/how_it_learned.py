"""How it learned: the ranker's training log, and what the multi-task experiments found.

From ``ranker/metrics.jsonl``: per-task losses, the task weights the weighting strategy chose,
the gradient cosine between tasks on the shared layers (negative = the tasks pull apart) and
how the tasks use the shared experts. From ``experiments/``: the engagement / satisfaction
Pareto plot of the weighting grid and the task-affinity table.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from _lib import artifacts, charts, logic, ui

run = artifacts.run_dir()
st.title("How it learned")
ui.need_models(run)


def training_log() -> None:
    steps, epochs = artifacts.read_log(run / "ranker")
    manifest = artifacts.read_json(run / "ranker" / "manifest.json") or {}
    model = manifest.get("model", {})
    st.caption(f"Ranker: **{model.get('name', '?')}** on tasks {', '.join(manifest.get('tasks', []))}"
               f"{' with ESMM (like = p(click) · p(like | click))' if manifest.get('esmm') else ''}; "
               f"{manifest.get('steps', len(steps))} steps, best epoch {manifest.get('best_epoch', '?')}.")
    if not steps:
        ui.missing("training log", run / "ranker" / "metrics.jsonl", artifacts.main_job_command(run))
        return
    window = st.slider("Smoothing (steps)", 1, 100, 25, key="smooth")
    c1, c2 = st.columns(2)
    with c1, ui.guard("the loss curves"):
        st.markdown("##### Training loss per task")
        st.altair_chart(charts.lines(logic.step_frame(steps, "loss", window=window), x="step", y="value",
                                     color="series", x_title="step", y_title="loss (smoothed)", color_title="task"),
                        width="stretch")
    with c2, ui.guard("the task weights"):
        st.markdown("##### Task weights over training")
        st.altair_chart(charts.lines(logic.step_frame(steps, "weight"), x="step", y="value", color="series",
                                     x_title="step", y_title="weight", color_title="task"), width="stretch")
    c3, c4 = st.columns(2)
    with c3, ui.guard("the gradient-conflict curve"):
        st.markdown("##### Gradient conflict: cosine between task gradients")
        cos = logic.step_frame(steps, "grad_cosine", window=max(1, window // 10))
        if cos.empty:
            st.info("This run logged no gradient cosines (diagnostics were off).")
        else:
            st.altair_chart(charts.lines(cos, x="step", y="value", color="series", x_title="step",
                                         y_title="cosine (shared layers)", color_title="task pair", zero_rule=True),
                            width="stretch")
            st.caption("Below 0, two tasks push the shared layers in opposite directions (negative transfer risk).")
    with c4, ui.guard("the expert gates"):
        st.markdown("##### Expert gate utilisation (late training)")
        gates = logic.gate_frame(steps)
        if gates.empty:
            st.info(f"No expert gates: the {model.get('name', 'model')} architecture has none (MMoE and PLE do).")
        else:
            st.altair_chart(charts.gates(gates), width="stretch")
            st.caption("Equal bars = the tasks share the experts; different bars = each task found its own.")
    if epochs:
        with ui.guard("the validation curve"):
            st.markdown("##### Validation AUC per epoch")
            st.altair_chart(charts.lines(logic.epoch_frame(epochs), x="epoch", y="value", color="metric",
                                         x_title="epoch", y_title="AUC", color_title="metric", height=240),
                            width="stretch")


with ui.guard("the training log"):
    training_log()

# ------------------------------------------------------------------ the weighting grid
st.subheader("Weighting strategies: engagement vs satisfaction")
grid_dir = run / "experiments" / "grid"
with ui.guard("the Pareto plot"):
    pareto = artifacts.read_json(grid_dir / "pareto.json")
    if pareto is None:
        ui.missing("weighting grid", grid_dir / "pareto.json", artifacts.grid_command(run))
    elif not pareto.get("points"):
        st.info("The grid has no configuration with both metrics yet.")
    else:
        st.altair_chart(charts.pareto(pareto), width="stretch")
        st.caption("Each point: one model × weighting strategy (mean over seeds). Dashed: a fixed weight a·click + "
                   "(1−a)·like swept over a. Ringed: the Pareto front, which no other point beats on both axes.")
with ui.guard("the grid's task weights"):
    runs = artifacts.grid_runs(run)
    if runs:
        names = [p.name for p in runs]
        seed0 = [n for n in names if n.endswith("seed0")] or names
        first_model = seed0[0].split("__")[0]
        default = [n for n in seed0 if n.startswith(first_model + "__")][:9]
        chosen = st.multiselect("Task weights over training, per grid run", names, default=default, key="grid_runs")
        frames = []
        for name in chosen:
            grid_steps, _ = artifacts.read_log(grid_dir / "runs" / name)
            f = logic.step_frame(grid_steps, "weight", max_points=300)
            f["run"] = name.replace("__", " · ")
            frames.append(f)
        if frames:
            st.altair_chart(charts.faceted_lines(pd.concat(frames, ignore_index=True), facet="run",
                                                 facet_title="run", y_title="weight"))

# ------------------------------------------------------------------ task affinity
st.subheader("Task affinity: which tasks help which")
aff_path: Path = run / "experiments" / "affinity" / "affinity.json"
with ui.guard("the task-affinity table"):
    affinity = artifacts.read_json(aff_path)
    if affinity is None:
        ui.missing("task-affinity study", aff_path, artifacts.affinity_command(run))
    else:
        frame = logic.affinity_frame(affinity)
        st.altair_chart(charts.affinity(frame), width="stretch")
        table = frame.pivot(index="metric", columns="partner", values="gain")
        st.dataframe(table.style.format("{:+.4f}", na_rep="–"), key="affinity_table")
        st.caption(f"{affinity.get('model', '')} + {affinity.get('weighting', '')}, seeds {affinity.get('seeds')}: "
                   "cell = metric of the row's task trained with the column's task − trained alone "
                   "(for RMSE, alone − together), so positive (blue) = the partner helps.")
