"""``python -m backlight`` runs the CLI."""

from backlight.cli import main

main()
