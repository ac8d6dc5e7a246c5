"""Demo-safe page plumbing: configuration, friendly errors, "how to make this" notes."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import streamlit as st
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

from _lib import artifacts


def configure() -> None:
    """Page config and the demo's client options: no tracebacks, a minimal toolbar."""
    st.set_page_config(page_title="recsys demo", page_icon=":material/movie:", layout="wide")
    for key, value in (("client.showErrorDetails", "none"), ("client.toolbarMode", "minimal")):
        try:
            st.set_option(key, value)
        except Exception as exc:  # an older Streamlit: keep going, the guard below still hides tracebacks
            print(f"app: could not set {key}: {exc!r}", file=sys.stderr)


class guard:
    """Show any exception in the block as a short st.error (no traceback) and log it to stderr.

    Errors caused by input (`recsys.errors.RecsysError`) show their own message, which says what
    to do; anything else shows a generic line. Streamlit's own control flow (st.stop, st.rerun)
    passes through.

    Example:
        >>> with guard("the loss curves"):   # doctest: +SKIP
        ...     draw()
    """

    def __init__(self, what: str) -> None:
        self.what = what

    def __enter__(self) -> guard:
        return self

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or isinstance(exc, ScriptControlException) or not isinstance(exc, Exception):
            return False
        print(f"app: error in {self.what}:\n{''.join(traceback.format_exception(kind, exc, tb))}",
              file=sys.stderr, flush=True)
        from recsys.errors import RecsysError

        if isinstance(exc, RecsysError):
            st.error(f"Could not show {self.what}: {exc}")
        else:
            st.error(f"Sorry, {self.what} could not be shown ({type(exc).__name__}). "
                     "The details are in the server log; the rest of the app still works.")
        return True


def need_models(run: Path) -> artifacts.Status:
    """The run's status; stop the page with the one command that makes the models when they are missing."""
    s = artifacts.status(run)
    if not s.models:
        what = "This directory does not exist" if not s.exists else (
            "It has no published ranker/" if not s.ranker else "It has no retriever/")
        st.warning(f"No trained models in `{run}` yet. {what}. Make them with one command:")
        st.code(artifacts.main_job_command(run), language="bash")
        st.caption("(from the repository root; `recsys run` with the same options does the same. It fetches MovieLens-100k, trains the "
                   "ranker and the retriever, evaluates them and writes everything this app shows.) "
                   "To open another directory: `streamlit run app/streamlit_app.py -- --run DIR`.")
        st.stop()
    manifest = artifacts.read_json(run / "ranker" / "manifest.json") or {}
    data = Path(str(manifest.get("dataset", "")))
    if not (data / "items.parquet").is_file():
        st.warning(f"The ranker in `{run}` was trained on the prepared data set `{data}`, which is not there any more. "
                   "Prepare it again (finished steps are not redone) with:")
        st.code(artifacts.main_job_command(run), language="bash")
        st.stop()
    return s


def missing(what: str, path: Path, command: str) -> None:
    """Say on the page that an optional artifact is missing and which command makes it."""
    st.info(f"No {what} yet (`{path}` is missing). Make it with:")
    st.code(command, language="bash")
