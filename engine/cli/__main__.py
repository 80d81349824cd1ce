"""``python -m engine.cli`` runs the ``torchdeck`` command."""

from engine.cli.main import main

main()
