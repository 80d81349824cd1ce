"""The training layer: the run handle, its loop and policies, models, optimizers, losses, metrics, jobs."""
