"""Shared fixtures: tiny BERT configurations, simulated corpus files and a fresh Python process that cannot import
the project."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from clinical_ner_zh.datasets_scripts.simulated import simulated_breast_cancer_records

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROJECT_PACKAGES = ("clinical_ner_zh",)

TINY_BERT = dict(
    vocab_size=99,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    max_position_embeddings=64,
)

# Prepended to code run in a fresh process: the project's own packages must not be importable there, so that
# whatever works does so through the files a saved model folder carries.
_BLOCK_PROJECT = f"""
import sys
class _BlockProject:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {PROJECT_PACKAGES!r}:
            raise ImportError(f"{{name}} must not be importable here")
sys.meta_path.insert(0, _BlockProject())
sys.path = [p for p in sys.path if p not in ("", {os.getcwd()!r})]
"""


@pytest.fixture
def run_isolated(tmp_path):
    """Run Python code in a new process, cwd elsewhere, offline, unable to import the project's packages."""

    def run(code: str, timeout: int = 300) -> str:
        workdir = tmp_path / "elsewhere"
        workdir.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "hf_modules"))
        result = subprocess.run(
            [sys.executable, "-c", _BLOCK_PROJECT + textwrap.dedent(code)],
            cwd=workdir,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise AssertionError(f"isolated process failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    return run


@pytest.fixture(scope="module")
def corpora(tmp_path_factory):
    """A simulated breast-cancer Label Studio export and a CCKS file, written once per test module."""
    from .helpers import simulated_ccks_records, write_ccks, write_label_studio_json  # here: helpers import TINY_BERT

    folder = tmp_path_factory.mktemp("corpora")
    breast = write_label_studio_json(folder / "breast.json", simulated_breast_cancer_records(30, seed=1))
    ccks = write_ccks(folder / "ccks.jsonl", simulated_ccks_records(30, seed=2))
    return {"breast": breast, "ccks": ccks, "folder": folder}
