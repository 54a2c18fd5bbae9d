"""Routing: the task taxonomy, the router and its rule, the operating point, the probe, embeddings and strategies."""
