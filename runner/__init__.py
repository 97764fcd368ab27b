"""vpc-runner-kit: run database migrations from GitHub Actions against a private database.

Subpackages:
    runner.migrate   the ``vpc-migrate`` command that runs on a runner inside the VPC.
"""

__version__ = "0.1.0"
