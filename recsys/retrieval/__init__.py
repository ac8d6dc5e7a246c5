"""Candidate retrieval: nearest-neighbour indexes over item embeddings (see `base`)."""
