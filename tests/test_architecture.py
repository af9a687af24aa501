"""The layout rules of docs/architecture.md, checked so they stay true: layers (import-linter), no task-name
branches outside the task registry, no private imports across modules, modules and functions kept short."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "tuneforge"
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
# Data tables, not logic: one entry per line reads best and is long by nature.
TABLE_FUNCTIONS: set[str] = set()


def _modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _task_names() -> set[str]:
    from tuneforge.tasks import TASKS

    return {entry.name for entry in TASKS}


def _strings(node: ast.AST) -> set[str]:
    return {n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)}


def test_no_task_name_comparisons_outside_the_registry():
    """Task-specific behaviour lives in the task registry (tuneforge/tasks/__init__.py): nobody else asks
    `if task == "frozen"`, so a new task plugs in at one place."""
    names = _task_names()
    registry = SRC / "tasks" / "__init__.py"
    found = []
    for path in _modules():
        if path == registry:
            continue
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.Compare):
                hits = _strings(node) & names
                if hits:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} compares with {sorted(hits)}")
    assert not found, "task names compared outside the registry:\n" + "\n".join(found)


def test_no_private_names_imported_across_modules():
    found = []
    for path in _modules():
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("tuneforge"):
                private = [a.name for a in node.names if a.name.startswith("_") and not a.name.startswith("__")]
                if private:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {private} from {node.module}")
    assert not found, "\n".join(found)


def test_modules_and_functions_stay_short():
    found = []
    for path in _modules():
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_MODULE_LINES:
            found.append(f"{path.relative_to(ROOT)}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name not in TABLE_FUNCTIONS:
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(): {length} lines "
                                 f"(at most {MAX_FUNCTION_LINES})")
    assert not found, "\n".join(found)


def test_layers_hold():
    """pyproject.toml's import-linter contracts: no upward imports, no cycles between the layers."""
    lint_imports = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if lint_imports is None:
        pytest.fail("lint-imports (import-linter) is not installed: `make install` installs it")
    result = subprocess.run([lint_imports, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
