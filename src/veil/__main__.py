"""``python -m veil`` (and ``torchrun -m veil``) runs the CLI."""

from veil.cli.app import main

main()
