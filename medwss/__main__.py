"""``python -m medwss`` and ``torchrun ... -m medwss``: the same command as the ``medwss`` script."""

from medwss.cli import run

if __name__ == "__main__":
    run()
