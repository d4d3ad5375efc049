"""Test data stays with the tests: the installed packages ship no broken-on-purpose records, benchmarks make their
own inputs, and test modules share helpers through conftest.py and tests/helpers.py, never through each other."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("modeling", "datasets_scripts", "metrics", "kg", "training", "cli_errors")


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, relative imports written with their dots (``.helpers``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
    return names


def test_the_packages_ship_no_test_records():
    assert importlib.util.find_spec("datasets_scripts.fixtures") is None
    writers = ("write_ccks", "write_label_studio_json", "ccks2020_records", "simulated_ccks_records")
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            defined = {node.name for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                       if isinstance(node, ast.FunctionDef)}  # fmt: skip
            assert not defined & set(writers), path


def test_no_test_module_imports_another_and_benchmarks_import_no_tests():
    for path in (ROOT / "tests").glob("*.py"):
        borrowed = {name for name in imported_modules(path) if name.lstrip(".").startswith(("test_", "tests.test_"))}
        assert not borrowed, f"{path.name} imports {borrowed}"
    for path in (ROOT / "benchmarks").glob("*.py"):
        assert not {name for name in imported_modules(path) if name.startswith("tests")}, path.name
