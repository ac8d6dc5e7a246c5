"""Evaluation: the ranker and the whole recommender against baselines, cold start, retrieval.

Reads ``eval/ranker.json`` (per-task metrics of the model, popularity and random on the test
split), ``eval/end_to_end.json`` (NDCG / recall of the top-k against popularity, candidate recall,
latency), ``eval/coldstart/`` (the cold-start curve) and ``index.json`` (the index choice).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from _lib import artifacts, charts, logic, ui

run = artifacts.run_dir()
st.title("Evaluation")
ui.need_models(run)
num = {"format": "%.4f"}
curve = None

# ------------------------------------------------------------------ the ranker
st.subheader("Multi-task ranker against baselines (test split)")
with ui.guard("the ranker evaluation"):
    ranker = artifacts.read_json(run / "eval" / "ranker.json")
    if ranker is None:
        ui.missing("ranker evaluation", run / "eval" / "ranker.json", artifacts.main_job_command(run))
    else:
        table = logic.ranker_table(ranker)
        st.caption(f"{ranker.get('rows', '?')} test rows, {ranker.get('users', '?')} users. "
                   "`like_among_clicks` ranks the clicked rows by satisfaction, where popularity alone does poorly.")
        left, right = st.columns([3, 2])
        with left:
            st.dataframe(table, hide_index=True, key="ranker_table",
                         column_config={s: st.column_config.NumberColumn(**num)
                                        for s in ("model", "popularity", "random")})
        with right:
            names = sorted(table["metric"].unique())
            metric = st.selectbox("Metric to compare", names, index=names.index("auc") if "auc" in names else 0,
                                  key="ranker_metric")
            st.altair_chart(charts.scorer_bars(table[table["metric"] == metric]), width="stretch")

# ------------------------------------------------------------------ end to end
st.subheader("The whole recommender: retrieve → rank → blend → top-k")
with ui.guard("the end-to-end evaluation"):
    e2e = artifacts.read_json(run / "eval" / "end_to_end.json")
    if e2e is None:
        ui.missing("end-to-end evaluation", run / "eval" / "end_to_end.json", artifacts.main_job_command(run))
    else:
        scorers = [s for s in ("recommender", "popularity") if s in e2e]
        metrics = list(e2e[scorers[0]]) if scorers else []
        st.dataframe(pd.DataFrame([{"scorer": s, **{m: e2e[s].get(m) for m in metrics}} for s in scorers]),
                     hide_index=True, key="e2e_table", column_config={m: st.column_config.NumberColumn(**num)
                                                                      for m in metrics})
        cols = st.columns(3)
        for name, value in (e2e.get("retrieval") or {}).items():
            cols[0].metric(f"candidate {name}", f"{value:.3f}")
        latency = e2e.get("latency_ms") or {}
        if "p50" in latency:
            cols[1].metric("request latency p50", f"{latency['p50']:.1f} ms")
        if "p99" in latency:
            cols[2].metric("request latency p99", f"{latency['p99']:.1f} ms")
        st.caption(f"{e2e.get('users', '?')} warm test users; history = their train + valid clicks; relevant = their "
                   f"test clicks; {e2e.get('n_candidates', '?')} candidates from the {e2e.get('index', '?')} index.")

# ------------------------------------------------------------------ cold start
st.subheader("Cold start: new users from K ratings")
cs_dir = run / "eval" / "coldstart"
with ui.guard("the cold-start curve"):
    curve = artifacts.read_json(cs_dir / "curve.json")
    if curve is None:
        ui.missing("cold-start curve", cs_dir / "curve.json", artifacts.coldstart_command(run))
    else:
        panels = curve.get("panels") or []
        labels = {p["metric"]: p["label"] + ("" if p.get("higher_is_better", True) else " (lower is better)")
                  for p in panels}
        if not labels:
            st.info("The cold-start curve has no metric panels.")
        else:
            metric = st.selectbox("Metric", list(labels), format_func=labels.get, key="cs_metric")
            points = pd.DataFrame(curve.get("points") or [])
            points = points[(points["metric"] == metric) & points["value"].notna()]
            warm = next((w["value"] for w in curve.get("warm", []) if w["metric"] == metric), None)
            oracle = next((w["value"] for w in curve.get("oracle", []) if w["metric"] == metric), None)
            bands = st.checkbox("Show the 95% bands", value=points["method"].nunique() <= 3, key="cs_bands")
            st.altair_chart(charts.coldstart(points, warm, title=labels[metric], x_label=curve.get("x_label", "K"),
                                             bands=bands, oracle=oracle), width="stretch")
            st.caption("One line per method; bands: 95% bootstrap over users; dashed: the ranker on warm users; "
                       "dotted: the oracle, the ranker trained with these new users' first events (the level "
                       "adaptation aims for).")
with ui.guard("the cold-start table"):
    report = artifacts.read_json(cs_dir / "coldstart.json")
    if report is None:
        if curve is not None:
            st.caption(f"(`{cs_dir / 'coldstart.json'}` is missing: the table of every metric is not shown.)")
    else:
        shown = [m for m in ("like_auc", "click_auc", "like_user_auc", "rating_rmse")
                 if any(m in (report.get("results", {}).get(meth, {}).get(str(k)) or {})
                        for meth in report.get("methods", []) for k in report.get("shots", []))]
        if shown:
            metric = st.selectbox("Table", shown, key="cs_table")
            table = logic.coldstart_table(report, metric)
            st.dataframe(table, hide_index=True, key="cs_table_df",
                         column_config={c: st.column_config.NumberColumn(**num) for c in table.columns[1:]})
        times = logic.coldstart_table(report, "adapt_ms_median")
        if len(times):
            st.caption("Adaptation time per user, median ms:")
            st.dataframe(times, hide_index=True, key="cs_times",
                         column_config={c: st.column_config.NumberColumn(format="%.2f") for c in times.columns[1:]})
        if report.get("best_meta"):
            st.caption(f"Best meta-learner by mean like AUC over K > 0: **{report['best_meta']}**.")

# ------------------------------------------------------------------ retrieval index
st.subheader("Candidate retrieval: index recall and latency")
with ui.guard("the index table"):
    index = artifacts.read_json(run / "index.json")
    if index is None:
        ui.missing("index choice", run / "index.json", artifacts.main_job_command(run))
    else:
        rows = [{"index": r.get("type"), "recall": r.get("recall"), "p50 ms": r.get("p50_ms"), "p99 ms": r.get("p99_ms"),
                 "build s": r.get("build_s"), "chosen": r.get("type") == index.get("type"),
                 "params": ", ".join(f"{k}={v}" for k, v in (r.get("params") or {}).items())}
                for r in index.get("table", [])]
        if rows:
            st.dataframe(pd.DataFrame(rows), hide_index=True, key="index_table",
                         column_config={c: st.column_config.NumberColumn(format="%.3f")
                                        for c in ("recall", "p50 ms", "p99 ms", "build s")})
        st.caption(f"Recall@{index.get('k', '?')} against exact search; target {index.get('target_recall', '?')}. "
                   f"Chosen: **{index.get('type', '?')}** (the fastest that reaches the target).")
