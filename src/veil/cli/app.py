"""The ``veil`` command. One module per command group, imported only when its command runs.

Why lazily: every role runs the same ``veil`` program, and a process should import only what its
role needs. The cloud's ``veil train`` and a cascade layer server (``veil cascade node``) never hold
a key, so they must not even import ``veil.keys`` (``tests/test_trust_boundaries.py`` runs them and
reads ``sys.modules``); importing every command module eagerly would pull it in through the owner's
commands. ``veil --help`` still lists every command (it imports them all to read their help).
To add a command: one entry in :data:`COMMANDS`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

import typer
from typer.core import TyperGroup

if TYPE_CHECKING:  # typer >= 0.2x ships its own copy of click: its types, not the click package's
    from typer._click.core import Command, Context

from veil.cli import common

# name -> (module, attribute): a typer.Typer (a command group) or a function (a single command), in help order.
COMMANDS: dict[str, tuple[str, str]] = {
    "key": ("veil.cli.key", "app"),
    "data": ("veil.cli.data", "app"),
    "extractor": ("veil.cli.extractor", "app"),
    "obfuscate": ("veil.cli.obfuscate", "obfuscate"),
    "methods": ("veil.cli.methods", "methods"),
    "train": ("veil.cli.train", "train"),
    "evaluate": ("veil.cli.evaluate", "evaluate"),
    "identify": ("veil.cli.evaluate", "identify"),
    "demo": ("veil.cli.demo", "demo"),
    "cascade": ("veil.cli.cascade", "app"),
    "attack": ("veil.cli.attack", "app"),
    "bench": ("veil.cli.bench", "app"),
    "xnnd": ("veil.cli.xnnd", "app"),
    "serve": ("veil.cli.serve", "serve"),
    "serve-credentials": ("veil.cli.serve", "credentials_app"),
    "serve-gallery": ("veil.cli.serve", "gallery_app"),
    "client": ("veil.cli.client", "app"),
    "report": ("veil.cli.report", "report"),
    "partition": ("veil.cli.partition", "app"),
}


def load_command(name: str) -> Command:
    """Import the module behind ``name`` and build its click command (a group for a typer app)."""
    module, attr = COMMANDS[name]
    obj = getattr(importlib.import_module(module), attr)
    cmd: Command
    if isinstance(obj, typer.Typer):
        cmd = typer.main.get_group(obj)
    else:
        single = typer.Typer()
        single.command(name)(obj)
        cmd = typer.main.get_command(single)
    cmd.name = name
    return cmd


class LazyGroup(TyperGroup):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        if cmd_name not in self.commands and cmd_name in COMMANDS:
            self.commands[cmd_name] = load_command(cmd_name)
        return self.commands.get(cmd_name)


app = typer.Typer(
    name="veil",
    cls=LazyGroup,
    help="Veil: privacy-preserving outsourced deep learning, and the attacks that measure it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


@app.callback()
def _root() -> None:
    """Veil: privacy-preserving outsourced deep learning, and the attacks that measure it."""


def main() -> None:
    common.run(app)


if __name__ == "__main__":
    main()
