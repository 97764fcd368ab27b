"""Pytest plugin: the runner instance's user data run under bash with stub commands
(``simulator.instance.Boot``: what only exists on EC2 is stubbed, the rest is real)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simulator.instance import JIT, Boot, values

__all__ = ["JIT", "Boot", "boot", "values"]


@pytest.fixture
def boot(tmp_path: Path) -> Boot:
    return Boot(tmp_path)
