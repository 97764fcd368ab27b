"""Everything vpc-migrate prints: progress, GitHub Actions workflow commands, summary and outputs.

Progress and workflow commands go to stderr (the Actions runner reads commands from both
streams); stdout carries only data (``status --json``, ``token``) so it stays pipeable.
Every line passes through ``redact`` so a secret registered with ``mask`` never reaches a log,
and under Actions it is also announced with ``::add-mask::`` before it is ever used.

Much of what is printed was not written by vpc-migrate: SQL from migration files, server errors and
NOTICEs, the application_name and query of sessions that block us (any login can set those), file
names, a child's output. The Actions runner reads a line as a workflow command in two syntaxes:
``::name props::data`` when the line starts with ``::`` after leading whitespace, and the legacy
``##[name props]data`` anywhere in a line. Such text therefore passes ``guard_untrusted`` on its way
out, so that none of it can become a command (a ``stop-commands`` from it would, for one, make the
runner ignore our next ``::add-mask::`` and print a token in clear).
"""

from __future__ import annotations

import io
import json
import logging
import os
import secrets
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from types import TracebackType
from typing import IO, TextIO

# The legacy command opener, found by the runner anywhere in a line.
LEGACY_COMMAND_OPENER = "##["
# Invisible, not whitespace for the runner's TrimStart: "##\u2060[" and "\u2060::" are no commands.
WORD_JOINER = "\u2060"
# How long to keep relaying a child's output after it exited (a grandchild may hold its pipes).
RELAY_GRACE_S = 5.0


def escape_data(text: str) -> str:
    """Escape a workflow command's message (after the final ``::``)."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def escape_property(text: str) -> str:
    """Escape a workflow command property value (``file=``, ``title=``...)."""
    return escape_data(text).replace(":", "%3A").replace(",", "%2C")


def could_be_workflow_command(text: str) -> bool:
    """Whether the runner could read some line of ``text`` as a workflow command, in either syntax.

    The runner splits at CR and LF and trims leading white space; ``str.splitlines`` and ``str.lstrip``
    split and strip at a superset of those characters, so this errs towards True.
    """
    return LEGACY_COMMAND_OPENER in text or any(line.lstrip().startswith("::") for line in text.splitlines())


def disarm_workflow_commands(text: str) -> str:
    """``text`` with a U+2060 WORD JOINER wherever a command could start: inside ``##[`` and before a
    line's leading ``::``. It reads the same to a person, and no line of it is a command."""
    text = text.replace(LEGACY_COMMAND_OPENER, "##" + WORD_JOINER + "[")
    lines = text.splitlines(keepends=True)
    for i, line in enumerate(lines):
        body = line.lstrip()
        if body.startswith("::"):
            lines[i] = line[: len(line) - len(body)] + WORD_JOINER + body
    return "".join(lines)


def guard_untrusted(text: str, *, fence: bool = True) -> str:
    """The one gate for text vpc-migrate did not write, on its way into a GitHub Actions log.

    Returns ``text`` such that the runner reads no line of it as a workflow command, in either syntax.
    With ``fence`` (free text on stderr): unchanged when no line could be a command, otherwise wrapped
    byte for byte in ``::stop-commands::TOKEN`` ... ``::TOKEN::``, TOKEN fresh and random so the text
    cannot end the fence early. Without ``fence`` (data on stdout, messages inside our own commands):
    disarmed in place with ``disarm_workflow_commands``. Stdout gets no fence lines because it is data
    (``status --json | jq``), and because the runner reads stdout and stderr on separate pipes: fences
    on both could interleave, one stream's fence ending while the other's text still arrives.
    A trailing newline is kept: complete lines in, complete lines out.
    """
    if not fence:
        return disarm_workflow_commands(text)
    if not could_be_workflow_command(text):
        return text
    token = secrets.token_hex(16)
    body = text if text.endswith("\n") else text + "\n"
    fenced = f"::stop-commands::{token}\n{body}::{token}::"
    return fenced + "\n" if text.endswith("\n") else fenced


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
        # One write at a time (a child's output is relayed from threads): a fence is never split.
        self._lock = threading.Lock()

    # -- secrets -------------------------------------------------------------------------
    def mask(self, secret: str) -> None:
        """Register a secret: redacted from our output, masked in the Actions log."""
        if not secret or secret in self._secrets:
            return
        self._secrets.append(secret)
        if self.actions:
            # Written raw (not through redact) and flushed before the secret can be used. The runner
            # unescapes a command's data, so escaping keeps the mask exactly the secret.
            self._write(self._err, f"::add-mask::{escape_data(secret)}\n")

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    # -- human output and data: all of it may hold untrusted text --------------------------
    def info(self, text: str) -> None:
        self._emit(text + "\n", stderr=True)

    def data(self, text: str) -> None:
        """Machine-readable output on stdout."""
        self._emit(text + "\n", stderr=False)

    def data_json(self, value: object) -> None:
        """JSON on stdout. Under Actions ``##[`` is written ``##\\u005b``: the same JSON value, no command."""
        text = json.dumps(value, indent=2)
        if self.actions:
            text = text.replace(LEGACY_COMMAND_OPENER, "##\\u005b")
        self.data(text)

    def secret_data(self, secret: str) -> None:
        """Print a secret on purpose (`vpc-migrate token`): unredacted, but masked first under Actions."""
        self.mask(secret)
        self._write(self._out, secret + "\n")

    def _emit(self, text: str, *, stderr: bool) -> None:
        """Redact, pass the gate under Actions (fenced on stderr, disarmed on stdout), write."""
        text = self.redact(text)
        if self.actions:
            text = guard_untrusted(text, fence=stderr)
        self._write(self._err if stderr else self._out, text)

    def _write(self, stream: TextIO, text: str) -> None:
        with self._lock:
            stream.write(text)
            stream.flush()

    # -- output of others: a child process, a Python migration, Python itself ----------------
    def relay(self, pipe: IO[bytes], *, stderr: bool) -> threading.Thread:
        """Copy a child's output pipe through the gate, line by line, on a thread; returns the thread."""

        def run() -> None:
            with pipe:
                for raw in iter(pipe.readline, b""):
                    line = raw.decode("utf-8", "replace")
                    self._emit(line if line.endswith("\n") else line + "\n", stderr=stderr)

        thread = threading.Thread(target=run, name=f"relay-{'stderr' if stderr else 'stdout'}", daemon=True)
        thread.start()
        return thread

    @contextmanager
    def gate_stdio(self) -> Iterator[None]:
        """While in-process code we did not write runs (a Python migration), its prints pass the gate."""
        if not self.actions:
            yield
            return
        out, err = _LineGate(lambda t: self._emit(t, stderr=False)), _LineGate(lambda t: self._emit(t, stderr=True))
        try:
            with redirect_stdout(out), redirect_stderr(err):
                yield
        finally:
            out.close()
            err.close()

    def gate_python_output(self) -> None:
        """Under Actions, what Python itself prints passes the gate too: an unexpected traceback (a server
        error outside MigrateError), a library's log record (psycopg logs server errors it ignores),
        a warning."""
        if not self.actions:
            return
        sys.excepthook = self._excepthook
        threading.excepthook = self._thread_excepthook
        logging.lastResort = _ReporterHandler(self)
        logging.captureWarnings(True)

    def _excepthook(self, kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        self._emit("".join(traceback.format_exception(kind, value, tb)), stderr=True)

    def _thread_excepthook(self, args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread else "?"
        text = "".join(traceback.format_exception(args.exc_type, args.exc_value, args.exc_traceback))
        self._emit(f"Exception in thread {name}:\n{text}", stderr=True)

    # -- workflow commands ----------------------------------------------------------------
    @contextmanager
    def group(self, title: str) -> Iterator[None]:
        if not self.actions:
            yield
            return
        self._command("group", title)
        try:
            yield
        finally:
            self._command("endgroup", "")

    def error(
        self, message: str, *, file: str | None = None, line: int | None = None, title: str | None = None
    ) -> None:
        """An error line for humans, and under Actions an annotation on the file and line."""
        if not self.actions:
            self.info(f"error: {message}")
            return
        props: list[tuple[str, str]] = []
        if file:
            props.append(("file", file))
            if line:
                props.append(("line", str(line)))
        if title:
            props.append(("title", title))
        self._command("error", message, props)

    def warning(self, message: str) -> None:
        if self.actions:
            self._command("warning", message)
        else:
            self.info(f"warning: {message}")

    def _command(self, name: str, message: str, properties: Sequence[tuple[str, str]] = ()) -> None:
        """One workflow command of ours. Its message and property values may hold untrusted text: each is
        redacted, disarmed (no ``##[`` survives in the line) and escaped (it stays one line)."""

        def clean(text: str) -> str:
            return disarm_workflow_commands(self.redact(text))

        props = ",".join(f"{key}={escape_property(clean(value))}" for key, value in properties)
        line = f"::{name}{' ' + props if props else ''}::{escape_data(clean(message))}"
        self._write(self._err, self.redact(line) + "\n")

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


class _LineGate(io.TextIOBase):
    """A text stream that hands complete lines to ``emit``; a partial line waits for its end (or for
    ``close``), so no command can be assembled from pieces that passed the gate one by one."""

    def __init__(self, emit: Callable[[str], None]) -> None:
        super().__init__()
        self._emit = emit
        self._pending = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._pending += text
        cut = self._pending.rfind("\n") + 1
        if cut:
            complete, self._pending = self._pending[:cut], self._pending[cut:]
            self._emit(complete)
        return len(text)

    def close(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            self._emit(pending + "\n")
        super().close()


class _ReporterHandler(logging.Handler):
    """``logging.lastResort`` under Actions: records without a handler of their own, through the gate."""

    def __init__(self, reporter: Reporter) -> None:
        super().__init__(logging.WARNING)
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reporter.info(self.format(record))
        except Exception:
            self.handleError(record)


def markdown_cell(text: str) -> str:
    """Make arbitrary text safe inside one Markdown table cell."""
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\r", " ").replace("\n", " ")
