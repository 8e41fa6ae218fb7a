"""The ``veil`` command. One module per command group; each registers itself here."""

from __future__ import annotations

import typer

from veil.cli import common

app = typer.Typer(
    name="veil",
    help="Veil: privacy-preserving outsourced deep learning, and the attacks that measure it.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)


def _register() -> None:
    from veil.cli import attack, cascade, data, demo, evaluate, extractor, key, obfuscate, train

    app.add_typer(key.app, name="key")
    app.add_typer(data.app, name="data")
    app.add_typer(extractor.app, name="extractor")
    app.command("obfuscate")(obfuscate.obfuscate)
    app.command("train")(train.train)
    app.command("evaluate")(evaluate.evaluate)
    app.command("identify")(evaluate.identify)
    app.command("demo")(demo.demo)
    app.add_typer(cascade.app, name="cascade")
    app.add_typer(attack.app, name="attack")
    from veil.cli import bench  # own line (paper tables)

    app.add_typer(bench.app, name="bench")
    from veil.cli import client as xnnd_client  # own line (XNN-d): merges cleanly with edits nearby
    from veil.cli import serve as xnnd_serve
    from veil.cli import xnnd

    app.add_typer(xnnd.app, name="xnnd")
    app.command("serve")(xnnd_serve.serve)
    app.add_typer(xnnd_serve.credentials_app, name="serve-credentials")
    app.add_typer(xnnd_client.app, name="client")
    from veil.cli import report  # own line: merges cleanly with edits to the import above

    app.command("report")(report.report)
    app.add_typer(__import__("veil.cli.partition", fromlist=["app"]).app, name="partition")  # issue 5, own line


_register()


def main() -> None:
    common.run(app)


if __name__ == "__main__":
    main()
