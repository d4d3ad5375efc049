"""The package installs under one distinct name: every folder as clinical_ner_zh.<folder>. Top-level names such
as modeling, metrics, training or kg would collide with other projects in site-packages."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("modeling", "datasets_scripts", "metrics", "kg", "training", "cli_errors")


@pytest.mark.slow
def test_the_wheel_holds_only_clinical_ner_zh(tmp_path):
    # Built from a copy so that setuptools' build/ and egg-info never land in the repository.
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for folder in FOLDERS:
        shutil.copytree(ROOT / folder, source / folder, ignore=shutil.ignore_patterns("__pycache__"))
    command = [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--quiet", "-w", str(tmp_path / "dist")]
    if _setuptools_builds_wheels():
        command.append("--no-build-isolation")  # the installed setuptools builds it, no registry needed
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    (wheel,) = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    outside = [n for n in names if not n.startswith(("clinical_ner_zh/", "clinical_ner_zh-"))]
    assert outside == [], outside
    for folder in FOLDERS:
        assert f"clinical_ner_zh/{folder}/__init__.py" in names, folder
    assert "clinical_ner_zh/metrics/clinical_ner_f1/clinical_ner_f1.py" in names


def _setuptools_builds_wheels() -> bool:
    """setuptools builds wheels without the ``wheel`` package from 70.1 on (older ones need build isolation)."""
    if importlib.util.find_spec("setuptools") is None:
        return False
    from importlib.metadata import version

    return tuple(int(part) for part in version("setuptools").split(".")[:2]) >= (70, 1)


def test_the_packages_import_as_clinical_ner_zh_from_elsewhere(tmp_path):
    code = f"""
import importlib, importlib.util
for folder in {FOLDERS!r}:
    importlib.import_module("clinical_ner_zh." + folder)
    assert importlib.util.find_spec(folder) is None, folder + " is installed as a top-level name"
"""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
