"""The data layer never imports Textual: checked statically and at import time."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "opstui"
# Only these may import Textual: the UI layer, and the entry point that starts it.
UI_PATHS = ("ui/", "cli/tui.py", "__main__.py")


def _data_layer_modules() -> list[Path]:
    modules = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE).as_posix()
        if not relative.startswith(UI_PATHS):
            modules.append(path)
    return modules


def _imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_no_data_layer_module_imports_textual_or_the_ui():
    modules = _data_layer_modules()
    assert any(m.name == "embedded.py" for m in modules), "the check must see the backend"
    offenders = {}
    for path in modules:
        bad = {
            name
            for name in _imported_names(path)
            if name.split(".")[0] in ("textual", "textual_fastdatatable")
            or name.startswith(("opstui.ui", "opstui.app"))
        }
        if bad:
            offenders[path.relative_to(PACKAGE).as_posix()] = sorted(bad)
    assert offenders == {}


def test_importing_the_data_layer_does_not_load_textual():
    modules = [
        "opstui." + p.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        for p in _data_layer_modules()
        if p.name not in ("__main__.py",)
    ]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'textual_fastdatatable'))\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
