"""Lightning-side code: LightningModules, callbacks and torchmetrics wrappers."""
