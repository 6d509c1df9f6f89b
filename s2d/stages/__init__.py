"""Thin stage entry points: each reads the previous stage's artifact and writes its own. Hydra configs come
in as plain values; the work itself is done by the pure modules."""
