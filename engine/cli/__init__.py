"""The headless ``torchdeck`` command line (Typer), a thin layer over the engine."""
