"""``graddoctor demo`` (placeholder until the full demo lands: prints the model map)."""

from __future__ import annotations

import click


@click.command()
def demo() -> None:
    """Show graddoctor on a 20-layer sigmoid MLP (for now: its model map)."""
    from .map import map_command

    click.echo("graddoctor demo (preview): the layer map of a 20-layer sigmoid MLP with default init")
    map_command.main(["--depth", "20"], standalone_mode=False)
