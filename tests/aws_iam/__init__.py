"""Least-privilege checks: an IAM policy evaluator and the Service Authorization Reference, for tests."""
