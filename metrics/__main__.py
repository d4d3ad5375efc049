"""``python -m clinical_ner_zh.metrics GOLD PRED [--format table|json] [--output report.json]``; see :mod:`clinical_ner_zh.metrics.cli`."""

from clinical_ner_zh.cli_errors import run_command

from .cli import main

if __name__ == "__main__":
    run_command(main)
