"""The layout's rule, checked: code that runs on an untrusted party never imports the owner's key module.

Imports are followed transitively inside the ``veil`` package, so a helper that pulls in
``veil.keys`` indirectly is caught too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
UNTRUSTED = ["veil.train.cloud", "veil.store", "veil.obfuscation.xnn", "veil.models.recnet", "veil.cascade.node"]
UNTRUSTED_PACKAGES = ["veil.attacks", "veil.serve"]


def module_file(name: str) -> Path | None:
    base = SRC / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_of(name: str) -> set[str]:
    path = module_file(name)
    if path is None:
        return set()
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.level:
                pkg = name.split(".")[: -node.level] if path.name != "__init__.py" else name.split(".")
                mod = ".".join(pkg[: len(pkg) - node.level + 1] + [node.module])
            else:
                mod = node.module
            found.add(mod)
            found.update(f"{mod}.{a.name}" for a in node.names)
    return {m for m in found if m.startswith("veil") and module_file(m) is not None}


def closure(name: str) -> set[str]:
    seen, todo = set(), [name]
    while todo:
        mod = todo.pop()
        if mod in seen:
            continue
        seen.add(mod)
        todo.extend(imports_of(mod))
        parts = mod.split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)))  # parent packages run too
    return seen


def untrusted_modules() -> list[str]:
    mods = list(UNTRUSTED)
    for pkg in UNTRUSTED_PACKAGES:
        folder = SRC / Path(*pkg.split("."))
        mods.extend(f"{pkg}.{p.stem}" for p in folder.glob("*.py") if p.stem != "__init__")
    return mods


@pytest.mark.parametrize("module", untrusted_modules())
def test_untrusted_code_never_imports_keys(module):
    assert module_file(module) is not None, f"{module} moved: update this test"
    assert "veil.keys" not in closure(module), f"{module} reaches veil.keys"


def test_the_checker_sees_the_owner_side_import():
    assert "veil.keys" in closure("veil.obfuscation.keyed")  # the rule can fail


# XNN-d: the recognition server and the attacks never reach the client's noise encoder (veil.xnnd) or keys.
SERVER_SIDE = [f"veil.serve.{p.stem}" for p in (SRC / "veil" / "serve").glob("*.py")] + ["veil.attacks.black_box"]


@pytest.mark.parametrize("module", SERVER_SIDE)
def test_server_and_attacker_never_import_the_client_encoder(module):
    reached = closure(module)
    assert "veil.keys" not in reached, f"{module} reaches veil.keys"
    assert not [m for m in reached if m == "veil.xnnd" or m.startswith("veil.xnnd.")], f"{module} reaches veil.xnnd"


def test_the_checker_sees_the_client_encoder_import():
    assert "veil.xnnd.generator" in closure("veil.cli.client")  # the XNN-d rule can fail


# Entry points: a process started as an untrusted role imports only what that role needs (issue 14).
# Run each in a fresh interpreter, as `veil ...` would start, and read sys.modules: this catches imports
# the AST walk cannot see (the CLI registers commands by name and imports them when they run).
ENTRY_POINTS = [(["train"], "veil.train.cloud"), (["cascade", "node"], "veil.cascade.node")]
_PROBE = """
import sys
from veil.cli.app import app
argv, runtime = sys.argv[1:-1], sys.argv[-1]
try:
    app([*argv, "--help"], prog_name="veil")
except SystemExit:
    pass
__import__(runtime)  # what the command imports when it runs, beyond its module's top level
print("MODULES", " ".join(sorted(m for m in sys.modules if m.startswith("veil"))))
"""


def _entry_modules(argv: list[str], runtime: str) -> set[str]:
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PROBE, *argv, runtime], capture_output=True, text=True,
                         timeout=300, check=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("MODULES"))
    return set(line.split()[1:])


@pytest.mark.parametrize("argv, runtime", ENTRY_POINTS, ids=lambda v: " ".join(v) if isinstance(v, list) else v)
def test_untrusted_entry_points_never_import_keys(argv, runtime):
    loaded = _entry_modules(argv, runtime)
    assert f"veil.cli.{argv[0]}" in loaded, "the probe did not load the command"
    assert "veil.keys" not in loaded, f"`veil {' '.join(argv)}` imports veil.keys"


def test_the_entry_point_probe_sees_an_owner_command():
    assert "veil.keys" in _entry_modules(["obfuscate"], "veil.pipeline")  # the probe can fail


# The face pipeline (veil.faces) is the owner's: photos are aligned where they are taken, and what leaves is
# features. The cloud, the servers and the attacks receive chips or features and never import it (the FaceSet
# type they share lives in veil.data.faceset; the loaders that align are veil.data.loaders).
def test_untrusted_code_never_imports_the_face_pipeline():
    for module in [*untrusted_modules(), *SERVER_SIDE]:
        reached = closure(module)
        assert not [m for m in reached if m == "veil.faces" or m.startswith("veil.faces.")], \
            f"{module} reaches veil.faces"


def test_the_checker_sees_the_face_pipeline_import():
    assert "veil.faces.bulk" in closure("veil.data.loaders")  # the rule can fail
