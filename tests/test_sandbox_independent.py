"""The sandbox is an independent model of iVvy: written from the reference, it imports nothing
of the pipeline (not ``fields``, whose tables the validator reads, nor any stage). It may share
``signing`` (``tests/rawsign.py`` checks that against the reference's vectors by hand) and the
client's ``Credentials`` value (to hand a test the address it serves)."""

from __future__ import annotations

import ast
from pathlib import Path

SANDBOX = Path(__file__).resolve().parent.parent / "importer" / "sandbox"
ALLOWED = {"importer.signing", "importer.client"}


def imports_of(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("importer"):
                found.add(node.module or "")
            elif node.level >= 2 and node.module:  # from ..x import y: the importer package
                found.add("importer." + node.module.split(".")[0])
            elif node.level >= 2:  # from .. import x
                found |= {"importer." + a.name for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("importer")}
    return found


def test_the_sandbox_imports_nothing_of_the_pipeline():
    files = sorted(SANDBOX.glob("*.py"))
    assert files
    used = {path.name: imports_of(path) - ALLOWED for path in files}
    assert {name: mods for name, mods in used.items() if mods} == {}


def test_only_the_server_helper_uses_the_client():
    users = [p.name for p in SANDBOX.glob("*.py") if "importer.client" in imports_of(p)]
    assert users == ["_server.py"]
