"""``python -m metrics GOLD PRED [--format table|json] [--output report.json]``; see :mod:`metrics.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
