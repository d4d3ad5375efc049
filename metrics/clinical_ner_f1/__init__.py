"""The ``evaluate`` module folder (a package only so that wheels ship it); load it with ``evaluate.load(path)``."""
