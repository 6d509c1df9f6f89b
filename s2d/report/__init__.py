"""What a run shows a person: learning curves, per-stage gains, stage pictures (pure functions of files and
metrics; no Lightning, no Hydra)."""
