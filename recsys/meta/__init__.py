"""Meta-learned cold start: adapters that personalise the ranker from a new user's first K
interactions (see `recsys.meta.base`)."""
