"""Output folders of the converters (``python -m clinical_ner_zh.datasets_scripts.ccks2019`` and friends, ``python -m clinical_ner_zh.kg.cmekg``):
never overwritten by accident, and replaced only by a complete new folder.

A command checks its ``--output-dir`` with :func:`check_output_folder` before it reads anything, and writes into
:func:`replacing_folder`, a folder beside it that takes its place when everything is written: a run that fails
half-way (a bad input, Ctrl-C) leaves the output folder as it was. :func:`check_writable` is also how the training
scripts and ``predict.py`` check their output paths before any work.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Collection, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import UserError

OVERWRITE_FLAG = "--overwrite-output-dir"


def check_writable(folder: Path, what: str) -> None:
    """``folder`` can be written in or created: the nearest existing folder at or above it is one this user may
    write in. Checked by every process before any work, so that a run does not fail on it at its end (under
    ``accelerate launch``, on the main process alone while the others wait at a barrier)."""
    existing = folder.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"{what}: cannot write in {existing}")


def folder_entries(folder: Path) -> list[str]:
    """The names in ``folder`` (none if it does not exist); a file in its place is an error."""
    if folder.exists() and not folder.is_dir():
        raise UserError(f"output folder {folder} is a file")
    return sorted(entry.name for entry in folder.iterdir()) if folder.is_dir() else []


def listed(entries: list[str]) -> str:
    """The first few names of a folder, for a message."""
    return ", ".join(entries[:5]) + (f" and {len(entries) - 5} more" if len(entries) > 5 else "")


def check_output_folder(folder: Path, overwrite: bool, outputs: Collection[str]) -> None:
    """A non-empty ``folder`` is refused, unless ``overwrite`` and it holds nothing but ``outputs`` (the names the
    command writes): the whole folder is replaced, so anything else in it would be lost."""
    entries = folder_entries(folder)
    check_writable(folder.parent, f"output folder {folder}")  # the new folder is made beside it
    if not entries:
        return
    if not overwrite:
        raise UserError(
            f"output folder {folder} is not empty ({listed(entries)}): {OVERWRITE_FLAG} replaces it, or choose "
            "another folder"
        )
    foreign = [name for name in entries if name not in outputs]
    if foreign:
        raise UserError(
            f"output folder {folder} holds files this command did not write ({listed(foreign)}): {OVERWRITE_FLAG} "
            "replaces only a folder of its own output; choose another folder"
        )


@contextmanager
def replacing_folder(folder: Path) -> Iterator[Path]:
    """An empty folder beside ``folder`` to write into; when the block ends without an error it takes the place of
    ``folder`` (and of its previous contents), otherwise it is removed and ``folder`` is left untouched."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if folder.is_dir():
        # Renaming over a folder works only when it is empty: move the old one aside first, then drop it.
        previous = staging.with_suffix(".previous")
        folder.rename(previous)
        staging.rename(folder)
        shutil.rmtree(previous)
    else:
        staging.rename(folder)
