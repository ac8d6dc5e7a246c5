"""New user: rate a few videos (or upload them) and see the recommendations adapt.

Before = a brand-new user with no ratings (the global ranker: no user id, no history). After =
the same ranker given the ratings as a support set, through the chosen cold-start adapter.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from _lib import artifacts, logic, ui
from recsys.pipeline import DEFAULT_ADAPTER

run = artifacts.run_dir()
st.title("New user")
st.caption("A new user is a new *task*: from a handful of their first ratings, a meta-learned adapter "
           "personalises the ranker in milliseconds, without retraining it.")
ui.need_models(run)
rec = artifacts.recommender(run)
titles = rec.titles
item_ids = rec.item_ids.tolist()
known = set(item_ids)
STARS = {r: "★" * r + "☆" * (5 - r) for r in range(1, 6)}


def title_of(item: int) -> str:
    return f"{titles.get(int(item), '?')}  · #{item}"


def example() -> None:
    """Fill in five popular titles with mixed ratings (a quick start for a live demo)."""
    import numpy as np

    order = np.argsort(-rec.popularity, kind="stable")
    picks = [int(rec.item_ids[i]) for i in order[:5]]
    st.session_state["picks"] = picks
    for item, stars in zip(picks, (5, 4, 2, 5, 1)):
        st.session_state[f"stars_{item}"] = stars


# ------------------------------------------------------------------ method
methods = artifacts.adapter_names()
top = st.columns([2, 1])
with top[0]:
    default = DEFAULT_ADAPTER if DEFAULT_ADAPTER in methods and artifacts.adapter_ready(run, DEFAULT_ADAPTER) else "none"
    method = st.selectbox("Cold-start method", methods, key="method", index=methods.index(default),
                          format_func=lambda m: m if artifacts.adapter_ready(run, m) else f"{m} (not fitted)")
with top[1]:
    k = st.slider("Recommendations", 5, 20, 10, key="k_new")

# ------------------------------------------------------------------ ratings
st.subheader("1 · Rate a few videos")
pick_col, file_col = st.columns([3, 2])
with pick_col:
    picks = st.multiselect("Search titles you have watched (type to search, in the order you watched them)",
                           item_ids, format_func=title_of, key="picks", max_selections=30,
                           placeholder="Type a title…")
    st.button("Try an example: five popular titles", on_click=example, key="example")
    manual = []
    for item in picks:
        if f"stars_{item}" not in st.session_state:  # a default without the Session State API warning
            st.session_state[f"stars_{item}"] = 4
        stars = st.select_slider(titles.get(item, str(item)), options=[1, 2, 3, 4, 5],
                                 format_func=STARS.get, key=f"stars_{item}")
        manual.append((int(item), float(stars)))
with file_col:
    upload = st.file_uploader(f"…or upload a CSV of `item_id,rating` (at most 1 MB, {logic.MAX_UPLOAD_ROWS} rows)",
                              key="upload", max_upload_size=1)
    st.download_button("Example file", "item_id,rating\n50,5\n181,4\n288,2\n", file_name="ratings.csv",
                       mime="text/csv", key="template")
    from_file = None
    if upload is not None:
        try:
            from_file, notes = logic.parse_ratings_csv(upload.getvalue(), known_items=known, name=f"“{upload.name}”")
        except logic.RatingsFileError as exc:
            st.error(str(exc))
        else:
            st.success(f"Using the {len(from_file)} ratings in “{upload.name}” (the picks on the left are ignored "
                       "while a file is uploaded).")
            for note in notes[:5]:
                st.caption(note)

support = from_file if from_file is not None else manual

# ------------------------------------------------------------------ before / after
st.subheader("2 · Recommendations before and after")
before, _ = artifacts.new_user_request(run, support=[], method=None, k=k)


def table(result, labels=None) -> pd.DataFrame:
    frame = pd.DataFrame([{"rank": r.rank, "title": r.title, "blended": r.blended, **r.scores, "item id": r.item_id}
                          for r in result.items])
    if labels is not None:
        frame.insert(1, "change", labels)
    return frame


def highlight(row: pd.Series) -> list[str]:
    change = row.get("change", "")
    if change == "new":
        style = "background-color: rgba(46, 160, 67, 0.22)"
    elif str(change).startswith("▲"):
        style = "background-color: rgba(46, 160, 67, 0.08)"
    elif str(change).startswith("▼"):
        style = "background-color: rgba(214, 69, 65, 0.10)"
    else:
        style = ""
    return [style] * len(row)


fmt = {"blended": "{:.3f}", **{t: "{:.3f}" for t in rec.tasks}}
if not support:
    st.info("Zero ratings so far: rate at least one video above (or upload a CSV) to see the recommendations "
            "adapt. Until then, this is what a brand-new user gets (the global ranker, no history):")
    st.dataframe(table(before).style.format(fmt), hide_index=True, key="before_only")
    st.stop()

adapter, note = artifacts.adapter(run, method)
used = method
if adapter is None:
    st.warning(f"`{method}` is not available: {note}. Showing `none` (the global ranker given your ratings as "
               f"history and query) instead. Fitted adapters are written to `{run / 'adapters'}/NAME/` by the "
               f"main job's cold-start step: `{artifacts.main_job_command(run)}`.")
    used = "none"
    adapter, note = artifacts.adapter(run, used)

with st.spinner(f"Adapting with {used}…"):
    after, adapt_ms = artifacts.new_user_request(run, support=support, method=used, k=k)
labels, dropped = logic.compare([r.item_id for r in before.items], [r.item_id for r in after.items])

m = st.columns(4)
m[0].metric("ratings used", len(support))
m[1].metric(f"adaptation time ({used})", f"{adapt_ms:.1f} ms" if adapt_ms is not None else "–")
m[2].metric("whole request", f"{after.timings_ms.get('total', 0):.1f} ms")
m[3].metric("new in the list", sum(lab == "new" for lab in labels))
st.caption(f"Method: **{used}**, {note}.")

b, a = st.columns(2)
with b:
    st.markdown("**Before:** no ratings (global ranker)")
    st.dataframe(table(before).style.format(fmt), hide_index=True, key="before")
with a:
    st.markdown(f"**After:** {len(support)} rating(s), adapted with `{used}`")
    st.dataframe(table(after, labels).style.apply(highlight, axis=1).format(fmt), hide_index=True, key="after")
    st.caption("change: **new** = not in the list before (green), ▲/▼ n = moved up/down n places.")
if dropped:
    rated = {i for i, _ in support}
    st.markdown("**Left the list:** " + " · ".join(f"_{titles.get(i, i)}_" + (" (you rated it)" if i in rated else "")
                                                  for i in dropped))
