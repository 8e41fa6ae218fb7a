"""``veil methods``: the registered obfuscation methods, where each acts, and what its secret is."""

from __future__ import annotations

from rich.table import Table

from veil.cli.common import friendly


@friendly
def methods() -> None:
    """List the obfuscation methods (`veil obfuscate --method NAME`, `veil bench table2 --methods ...`)."""
    from rich.console import Console

    from veil.obfuscation import registry

    table = Table(title="obfuscation methods")
    for col in ("name", "table label", "level", "secret", "options", "what it does"):
        table.add_column(col)
    for m in registry.methods():
        options = ", ".join(f"{k}={v}" for k, v in m.options.items()) or "—"
        table.add_row(m.name, m.display(), m.level, m.secret, options, m.summary)
    Console().print(table)
