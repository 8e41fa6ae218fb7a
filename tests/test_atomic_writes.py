"""Issue 24, finding 7: every file Veil writes goes through one atomic helper (``veil.io``, or
``veil.secretfile`` for secrets).

Before the fix ``metrics.json`` of ``veil cascade train``, the outputs of ``cli/partition.py``,
``cli/xnnd.py`` and ``xnnd/train.py`` and the table2/table4 ``.md`` files were written in place, so a
crash or a full disk left half a file that the next step read as whole. This test walks every module
under ``src/veil`` and fails on a direct write: ``open(..., "w"/"a"/"x")``, ``.write_text``,
``.write_bytes``, ``.savefig``, ``save_file``, ``np.save``/``torch.save``, ``json.dump`` to a file;
a write to the temporary path handed out by ``veil.io.atomic_write`` (named ``tmp``) or to an
in-memory buffer (``buf``) is allowed, and the few other exceptions are listed with their reason.
"""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "veil"
HELPERS = {"io.py", "secretfile.py"}
WRITERS = {"write_text", "write_bytes", "savefig", "save_file", "dump", "to_csv", "imwrite"}
ALLOWED_TARGETS = {"tmp", "buf"}
# (module, function): why it is not a plain data write
EXCEPTIONS = {
    ("cascade/pool.py", "_locked"): "opens the pool's lock file for fcntl.flock; no data is written to it",
    ("store.py", "_flush"): "a shard in the store's private temporary folder, which is renamed into place whole",
}


def _mode(call: ast.Call) -> str:
    if len(call.args) > 1 and isinstance(call.args[1], ast.Constant):
        return str(call.args[1].value)
    for kw in call.keywords:
        if kw.arg == "mode" and isinstance(kw.value, ast.Constant):
            return str(kw.value.value)
    return "r"


def _target(call: ast.Call) -> ast.expr | None:
    func = call.func
    if isinstance(func, ast.Attribute) and func.attr in {"write_text", "write_bytes"}:
        return func.value  # path.write_text(...)
    if isinstance(func, ast.Attribute) and func.attr == "dump":
        return call.args[1] if len(call.args) > 1 else None
    if isinstance(func, ast.Attribute) and func.attr == "save_file":
        return call.args[1] if len(call.args) > 1 else None
    return call.args[0] if call.args else None


def _named(expr: ast.expr | None) -> str:
    if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id == "str" and expr.args:
        return _named(expr.args[0])
    return expr.id if isinstance(expr, ast.Name) else ""


def _is_direct_write(node: ast.Call) -> bool:
    func = node.func
    if isinstance(func, ast.Name):  # bare names: open(); write_text()/write_bytes() are veil.io's helpers
        return (func.id == "open" and bool(set(_mode(node)) & set("wax"))) or func.id in {"save_file", "imwrite"}
    if not isinstance(func, ast.Attribute):
        return False
    owner = func.value.id if isinstance(func.value, ast.Name) else ""
    if func.attr == "dump":
        return owner in {"json", "pickle"}
    if func.attr == "save":
        return owner in {"np", "numpy", "torch"}
    if owner == "io" and func.attr in {"write_text", "write_bytes"}:
        return False  # ``from veil import io``: the atomic helpers themselves (stdlib io has neither)
    return func.attr in WRITERS


def direct_writes(path: Path) -> list[str]:
    rel = path.relative_to(SRC).as_posix()
    found: list[str] = []

    def visit(node: ast.AST, function: str) -> None:
        for child in ast.iter_child_nodes(node):
            inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) else function
            if isinstance(child, ast.Call) and _is_direct_write(child) \
                    and _named(_target(child)) not in ALLOWED_TARGETS and (rel, inner) not in EXCEPTIONS:
                found.append(f"{rel}:{child.lineno} {ast.unparse(child)[:90]}")
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), "<module>")
    return sorted(set(found))


def test_every_file_veil_writes_goes_through_the_atomic_helpers():
    offenders = [w for p in sorted(SRC.rglob("*.py")) if p.name not in HELPERS or p.parent != SRC
                 for w in direct_writes(p)]
    assert not offenders, "write these through veil.io (or veil.secretfile):\n" + "\n".join(offenders)


def test_the_walker_sees_a_plain_write(tmp_path):
    """The walker must catch each form it claims to, or the test above could not fail."""
    probe = SRC / "_atomic_probe_tmp.py"
    probe.write_text("import json, torch\n"
                     "def f(p, m, fig):\n"
                     "    p.write_text('x')\n"
                     "    open(p, 'w')\n"
                     "    torch.save(m, p)\n"
                     "    fig.savefig(p)\n"
                     "    json.dump({}, open(p, 'a'))\n"
                     "    tmp.write_text('ok')\n")
    try:
        found = direct_writes(probe)
    finally:
        probe.unlink()
    assert len(found) == 6, found  # 5 writes + the nested open; the tmp write is allowed
