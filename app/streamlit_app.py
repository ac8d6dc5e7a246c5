"""recsys demo: a YouTube-style two-stage, multi-task recommender with meta-learned cold start.

    streamlit run app/streamlit_app.py -- --run runs/main      (or: recsys app --run runs/main)

Pages: Recommend (retrieve → rank → blend, live task weights), New user (cold-start adaptation
from a few ratings), How it learned (losses, task weights, gates, gradient conflict, Pareto,
task affinity) and Evaluation (against baselines, cold-start curve, retrieval and latency).
The run directory is ``--run DIR`` after ``--``, else ``$RECSYS_RUN``, else ``runs/main``.
"""

from __future__ import annotations

import sys
from pathlib import Path

APP_DIR = Path(__file__).resolve().parent
for path in (APP_DIR, APP_DIR.parent):  # the app's helpers; the recsys package from a plain checkout
    if str(path) not in sys.path:
        sys.path.insert(0 if path == APP_DIR else len(sys.path), str(path))

import streamlit as st  # noqa: E402

from _lib import artifacts, ui  # noqa: E402

ui.configure()

PAGES = [
    st.Page("pages/recommend.py", title="Recommend", icon=":material/recommend:", default=True),
    st.Page("pages/new_user.py", title="New user", icon=":material/person_add:"),
    st.Page("pages/how_it_learned.py", title="How it learned", icon=":material/monitoring:"),
    st.Page("pages/evaluation.py", title="Evaluation", icon=":material/fact_check:"),
]
page = st.navigation(PAGES)

run = artifacts.run_dir()
with st.sidebar:
    st.markdown("**recsys** · retrieve → rank (click, like, rating) → blend")
    s = artifacts.status(run)
    st.caption(f"Run: `{run}`" + ("" if s.models else " (no trained models yet)"))

with ui.guard(f"the {page.title} page"):
    page.run()
