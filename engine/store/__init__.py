"""The storage layer: atomic files, checkpoints, run directories and their status."""
