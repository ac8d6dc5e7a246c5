"""Recommend: a known user and what they just watched → top-k, with the retrieved candidates.

The request is made once (k = every candidate) and cached; the task-weight sliders only
re-blend its per-task scores, as a product team would tune the blend without retraining.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from _lib import artifacts, charts, logic, ui

run = artifacts.run_dir()
st.title("Recommend")
st.caption("Pick a user and what they just watched. The retriever narrows the catalogue to a few hundred "
           "candidates; the multi-task ranker predicts **engagement** (click) and **satisfaction** (like, "
           "rating) for each; the blend of those predictions orders the final list.")
ui.need_models(run)
rec = artifacts.recommender(run)
titles = rec.titles
users = sorted(rec.user_x)


def title_of(item: int) -> str:
    return f"{titles.get(int(item), '?')}  · #{item}"


# ------------------------------------------------------------------ who and what
left, right = st.columns([1, 1])
with left:
    user = st.selectbox("User (type to search)", users, key="user",
                        format_func=lambda u: f"user {u} · {len(rec.history.get(u, []))} watched")
    typed = st.text_input("…or type a user id", key="typed_user", placeholder="e.g. 42",
                          help="Any id: one the ranker does not know gets a clear message and a flagged fallback.")

unknown = None
if typed.strip():
    try:
        typed_id = int(typed.strip())
    except ValueError:
        st.error(f"“{typed.strip()[:40]}” is not a user id: type a whole number such as {users[0]}.")
        st.stop()
    if rec.known_user(typed_id):
        user = typed_id
    else:
        unknown = typed_id

if unknown is not None:
    st.error(f"Unknown user {unknown}: not among the {len(users)} users the ranker was trained on. "
             "Clear the box and pick a user from the list, or open **New user** to start from a few ratings.")
    with ui.guard("the popular fallback"):
        res = artifacts.popular_fallback(run, user_id=unknown, k=10)
        st.info(f"Fallback, flagged as such: {res.fallback}.")
        st.dataframe(pd.DataFrame([{"rank": r.rank, "title": r.title, "item id": r.item_id,
                                    "training clicks": int(r.blended)} for r in res.items]),
                     hide_index=True)
    st.stop()

history = rec.history.get(user, [])
with left:
    if history:
        st.markdown("**Recently watched:** " + " · ".join(f"_{titles.get(i, i)}_" for i in reversed(history[-5:])))
with right:
    items = rec.item_ids.tolist()
    default_query = items.index(history[-1]) if history and history[-1] in titles else 0
    query = st.selectbox("Query video: what they just watched (type to search)", items, index=default_query,
                         format_func=title_of, key=f"query_{user}")
    k = st.slider("How many recommendations (k)", 3, 30, 10, key="k")

# ------------------------------------------------------------------ the blend
st.markdown("##### Blend: how much each task counts")
cols = st.columns(len(rec.tasks))
defaults = {"click": 0.5, "like": 0.5}
weights = {}
for col, task in zip(cols, rec.tasks):
    with col:
        weights[task] = st.slider(f"{task} ({logic.TASK_GROUPS.get(task, 'task')})", 0.0, 1.0,
                                  defaults.get(task, 0.0), 0.05, key=f"w_{task}")
if not any(w > 0 for w in weights.values()):
    st.warning("All task weights are 0: set at least one above 0. Showing the default blend "
               "(click 0.5, like 0.5) meanwhile.")
    weights = {t: defaults.get(t, 0.0) for t in rec.tasks}

with st.spinner("Retrieving and ranking…"):
    full = artifacts.full_request(run, user_id=user, query_item=query)
if full.fallback:
    st.warning(f"Fallback: {full.fallback}")
if not full.items:
    st.info("No candidates left for this user (they have seen everything the retriever returned).")
    st.stop()

ranked = logic.reblend(full.items, weights)
top = ranked.head(k).copy()
moves, _ = logic.compare([r.item_id for r in full.items[:k]], top["item_id"].tolist())
top.insert(1, "moved", moves)

c1, c2 = st.columns([5, 3])
with c1:
    st.subheader(f"Top {k} for user {user}")
    shown = ["rank", "moved", "title", "blended", *rec.tasks, "item_id"]
    config = {t: st.column_config.NumberColumn(f"{t} {'(1–5)' if t == 'rating' else 'p'}", format="%.3f", width=70)
              for t in rec.tasks}
    config["blended"] = st.column_config.ProgressColumn("blended", min_value=0.0, max_value=1.0, format="%.3f",
                                                        width=110)
    config["item_id"] = st.column_config.NumberColumn("item id", format="%d", width=64)
    config["rank"] = st.column_config.NumberColumn("rank", width=48)
    config["moved"] = st.column_config.TextColumn("moved", width=62, help="against the default blend (click 0.5, like 0.5)")
    config["title"] = st.column_config.TextColumn("title", width="medium")
    st.dataframe(top[shown], hide_index=True, column_config=config, key="topk")
    st.caption(f"Retrieval {full.timings_ms.get('retrieve', 0):.1f} ms and ranking {full.timings_ms.get('rank', 0):.1f} ms "
               f"for {len(full.candidates)} candidates (once; moving a slider only re-blends). "
               "Engagement: click. Satisfaction: like and rating (scaled to 0–1 in the blend).")
with c2:
    st.subheader(f"Retrieved candidates ({len(full.candidates)})")
    final = dict(zip(top["item_id"], top["rank"]))
    cand = pd.DataFrame([{"#": r + 1, "title": titles.get(i, "?"), "retrieval score": s,
                          "in top-k": i in final, "final rank": str(final[i]) if i in final else ""}
                         for r, (i, s) in enumerate(full.candidates)])
    st.dataframe(cand, hide_index=True, height=420,
                 column_config={"#": st.column_config.NumberColumn("#", width=44, help="retrieval rank"),
                                "title": st.column_config.TextColumn("title", width="medium"),
                                "retrieval score": st.column_config.NumberColumn("score", format="%.3f", width=64),
                                "in top-k": st.column_config.CheckboxColumn("top-k", width=56),
                                "final rank": st.column_config.TextColumn("final", width=52)})
    st.caption("Best first by the retriever's score; ✓ = made the top k after ranking and blending.")

with ui.guard("the blend chart"):
    st.markdown("##### What makes each score")
    st.altair_chart(charts.contributions(top, weights), width="stretch")
