"""``python -m lmforge`` (what ``torchrun -m lmforge ...`` runs): the CLI."""

from .cli import main

main()
