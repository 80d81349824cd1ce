"""``python -m cli`` runs the ``torchdeck`` command."""

from cli.main import command

command()
