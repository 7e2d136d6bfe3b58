"""``python -m cynode_core`` runs the ``cynode`` command."""

from cynode_core.cli import main

main()
