"""Placeholder until the training issue lands."""

if __name__ == "__main__":
    raise SystemExit("train_mlm.py: not yet implemented")
