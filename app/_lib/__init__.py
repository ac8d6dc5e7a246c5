"""Helpers of the Streamlit app: artifacts (cached loading), logic (pure), charts (Altair), ui."""
