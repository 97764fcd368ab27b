"""Everything vpc-migrate prints: progress, GitHub Actions workflow commands, summary and outputs.

Progress and workflow commands go to stderr (the Actions runner reads commands from both
streams); stdout carries only data (``status --json``, ``token``) so it stays pipeable.
Every line passes through ``redact`` so a secret registered with ``mask`` never reaches a log,
and under Actions it is also announced with ``::add-mask::`` before it is ever used.
"""

from __future__ import annotations

import os
import secrets
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TextIO


def escape_data(text: str) -> str:
    """Escape a workflow command's message (after the final ``::``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command property value (``file=``, ``title=``...)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


class Reporter:
    """Writes what the user sees; knows whether it runs under GitHub Actions."""

    def __init__(
        self, environ: Mapping[str, str] | None = None, *, err: TextIO | None = None, out: TextIO | None = None
    ) -> None:
        self.environ = os.environ if environ is None else environ
        self.actions = self.environ.get("GITHUB_ACTIONS") == "true"
        self._err = err or sys.stderr
        self._out = out or sys.stdout
        self._secrets: list[str] = []

    # -- secrets -------------------------------------------------------------------------
    def mask(self, secret: str) -> None:
        """Register a secret: redacted from our output, masked in the Actions log."""
        if not secret or secret in self._secrets:
            return
        self._secrets.append(secret)
        if self.actions:
            # Written raw (not through redact) and flushed before the secret can be used.
            self._err.write(f"::add-mask::{secret}\n")
            self._err.flush()

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- human output --------------------------------------------------------------------
    def info(self, text: str) -> None:
        self._write_untrusted(self._err, text)

    def data(self, text: str) -> None:
        """Machine-readable output on stdout."""
        self._out.write(self.redact(text) + "\n")
        self._out.flush()

    def secret_data(self, secret: str) -> None:
        """Print a secret on purpose (`vpc-migrate token`): unredacted, but masked first under Actions."""
        self.mask(secret)
        self._out.write(secret + "\n")
        self._out.flush()

    def _write_untrusted(self, stream: TextIO, text: str) -> None:
        text = self.redact(text)
        if self.actions and any(line.lstrip().startswith("::") for line in text.splitlines()):
            # Text we did not write ourselves (SQL, server messages) must not run as a command.
            token = secrets.token_hex(16)
            text = f"::stop-commands::{token}\n{text}\n::{token}::"
        stream.write(text + "\n")
        stream.flush()

    # -- workflow commands ----------------------------------------------------------------
    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        if not self.actions:
            yield
            return
        self._command(f"::group::{escape_data(title)}")
        try:
            yield
        finally:
            self._command("::endgroup::")

    def error(
        self, message: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None:
        """An error line for humans, and under Actions an annotation on the file and line."""
        if not self.actions:
            self.info(f"error: {message}")
            return
        props = []
        if file:
            props.append(f"file={escape_property(file)}")
            if line:
                props.append(f"line={line}")
        if title:
            props.append(f"title={escape_property(title)}")
        self._command(f"::error{' ' + ','.join(props) if props else ''}::{escape_data(message)}")

    def warning(self, message: str) -> None:
        if self.actions:
            self._command(f"::warning::{escape_data(message)}")
        else:
            self.info(f"warning: {message}")

    def _command(self, line: str) -> None:
        self._err.write(self.redact(line) + "\n")
        self._err.flush()

    # -- step summary and outputs ------------------------------------------------------------
    def summary(self, markdown: str) -> None:
        path = self.environ.get("GITHUB_STEP_SUMMARY")
        if self.actions and path:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(self.redact(markdown) + "\n")

    def set_outputs(self, values: Mapping[str, str]) -> None:
        path = self.environ.get("GITHUB_OUTPUT")
        if not (self.actions and path):
            return
        with open(path, "a", encoding="utf-8") as fh:
            for name, value in values.items():
                value = self.redact(value)
                if "\n" in value:
                    delimiter = f"EOF_{secrets.token_hex(8)}"
                    fh.write(f"{name}<<{delimiter}\n{value}\n{delimiter}\n")
                else:
                    fh.write(f"{name}={value}\n")


def markdown_cell(text: str) -> str:
    """Make arbitrary text safe inside one Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
