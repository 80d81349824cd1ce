"""torchdeck's command line: the Typer app (`torchdeck`, `python -m cli`), its reporters and the torchrun launcher."""
