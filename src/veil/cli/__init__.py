"""Veil's command line: thin typer wrappers that parse, call the library, and print."""
