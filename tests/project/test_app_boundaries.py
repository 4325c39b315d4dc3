"""The apps' import boundaries: cameras knows nothing of events (events registers with cameras),
and organizations, which the others build on, imports none of them.

Read with `ast`, so that an import inside a function counts as much as one at the top."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

FORBIDDEN = {
    "cameras": {"events"},
    "organizations": {"cameras", "chats", "events"},
}


def imported_modules(source: str, *, package: str) -> list[tuple[int, str]]:
    """(line, module) of every import in `source`, wherever it stands, relative ones resolved
    against `package`; `importlib.import_module("…")` with a literal name counts too."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                found.append((node.lineno, ".".join([*base, *filter(None, [node.module])])))
            else:
                found.append((node.lineno, node.module))
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.append((node.lineno, node.args[0].value))
    return found


def test_the_scanner_sees_imports_inside_functions_relative_ones_and_import_module():
    source = (
        "import os\n"
        "def f():\n"
        "    from events.services import camera_events_delete\n"
        "    from ..chats import models\n"
        "    importlib.import_module('cameras.capture')\n"
    )
    assert imported_modules(source, package="organizations.sub") == [
        (1, "os"),
        (3, "events.services"),
        (4, "organizations.chats"),
        (5, "cameras.capture"),
    ]
    assert imported_modules("from . import x", package="organizations") == [(1, "organizations")]


@pytest.mark.parametrize("app", sorted(FORBIDDEN))
def test_an_app_imports_none_of_the_apps_it_must_not_know(app):
    files = sorted((ROOT / app).rglob("*.py"))
    assert files, f"no modules found for {app}"
    crossings = []
    for path in files:
        package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
        for line, module in imported_modules(path.read_text(), package=package):
            if module.split(".")[0] in FORBIDDEN[app]:
                crossings.append(f"{path.relative_to(ROOT)}:{line} imports {module}")
    assert crossings == []
