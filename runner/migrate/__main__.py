"""``python -m runner.migrate`` is the same as the ``vpc-migrate`` console script."""

from .cli import run

run()
