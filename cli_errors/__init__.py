"""One error style for every command: a user's mistake is one line ``error: ...`` on stderr and exit status 2 (as
argparse does for a bad flag); a traceback only for a bug, or for anything with ``--debug``.

Each command's ``if __name__ == "__main__":`` is ``run_command(main)``; errors about input, arguments and paths
derive from :class:`UserError`, and their messages name the file, line, record id or offsets, never patient text.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

DEBUG_FLAG = "--debug"
USAGE_ERROR = 2  # argparse's status for a bad command line


class UserError(Exception):
    """A mistake in a command's arguments or input files, reported without a traceback."""


def add_debug_flag(parser: argparse.ArgumentParser) -> None:
    """List ``--debug`` in a command's ``--help`` (:func:`run_command` acts on it)."""
    parser.add_argument(DEBUG_FLAG, action="store_true", help="show the traceback of an error")


def run_command(main: Callable[[list[str]], object], argv: Sequence[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit with its status; a :class:`UserError` or an ``OSError`` (a file that cannot be
    opened, a model that cannot be found) becomes ``error: <message>`` on stderr and status 2."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        status = main(argv)
    except (UserError, OSError) as error:  # OSError: a path that cannot be read or written, a model not found
        if DEBUG_FLAG in argv:
            raise
        # Under `accelerate launch` every process meets the same error: the first one reports it.
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {describe(error)}", file=sys.stderr)
        sys.exit(USAGE_ERROR)
    # A main may return what it computed (train_ner.py returns its scores, for tests): that is not an exit status.
    sys.exit(status if isinstance(status, int) else 0)


def describe(error: Exception) -> str:
    """The one-line message of an error."""
    if isinstance(error, OSError) and error.filename is not None:
        return f"{error.filename}: {error.strerror or 'cannot be opened'}"
    return " ".join(str(error).split()) or type(error).__name__
