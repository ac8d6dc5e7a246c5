"""recsys: a YouTube-style two-stage recommender built to show multi-task learning and
meta-learning working for real (see README.md).

Importing the package is cheap: heavy dependencies (torch, polars, faiss) are imported by the
modules that need them, so `recsys --help` answers at once.
"""

__version__ = "0.1.0"
