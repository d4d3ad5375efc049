"""``python -m metrics GOLD PRED [--format table|json] [--output report.json]``; see :mod:`metrics.cli`."""

from cli_errors import run_command

from .cli import main

if __name__ == "__main__":
    run_command(main)
