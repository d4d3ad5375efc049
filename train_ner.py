"""Placeholder until the training issue lands."""

if __name__ == "__main__":
    raise SystemExit("train_ner.py: not yet implemented")
