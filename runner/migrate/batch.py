"""One round trip for a whole transactional migration, with every error still tied to its statement.

A migration's statements, its history row and the transaction around them go to the server as one
simple-protocol query (``BEGIN; ...; INSERT ...; COMMIT``). The server answers with one result per
statement and stops at the first error, so the number of results before the error names the failing
piece exactly; the error's position, when it has one, is relative to the whole text and is mapped back
to the piece. That is what psql does one statement at a time, in a single round trip instead of four.

psycopg's public ``execute`` raises on the first error without the results before it, so this module
uses psycopg's own non-blocking generator (``psycopg.generators.execute``) under ``Connection.wait``,
which cancels the query on the server on Ctrl-C/SIGTERM exactly as ``execute`` does. psycopg is pinned
in uv.lock; tests/migrate/test_batch.py holds this module to the behaviour it relies on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors, generators, pq

# Statuses after which the connection is in COPY mode: a migration file never gets there (COPY FROM
# STDIN is refused when files are validated), and a batch that did would have no safe way on.
_COPY = {pq.ExecStatus.COPY_IN, pq.ExecStatus.COPY_OUT, pq.ExecStatus.COPY_BOTH}
SEPARATOR = "\n;\n"  # a newline first: a statement may end with a -- comment


@dataclass(frozen=True)
class Piece:
    text: str
    tag: Any = None  # what the caller wants back when this piece fails (e.g. its Statement)


class BatchError(Exception):
    """The first error of a batch: the psycopg error, and the piece that raised it."""

    def __init__(self, error: psycopg.Error, piece: Piece, position: int | None) -> None:
        super().__init__(str(error))
        self.error = error
        self.piece = piece
        self.position = position  # 0-based character offset into piece.text, when the server gave one


def run(conn: psycopg.Connection[Any], pieces: list[Piece]) -> None:
    """Send every piece as one query; raise BatchError for the first failing piece.

    Pieces are separated by ``;`` on a line of its own, so each one is exactly one statement.
    """
    starts, text = [], ""
    for piece in pieces:
        if text:
            text += SEPARATOR
        starts.append(len(text))
        text += piece.text
    encoding = conn.info.encoding
    with conn.lock:
        conn.pgconn.send_query(text.encode(encoding))
        results = conn.wait(generators.execute(conn.pgconn))
    for index, result in enumerate(results):
        if result.status in _COPY:
            conn.close()  # the only safe way out of an unexpected COPY
            raise psycopg.InterfaceError(f"statement {index + 1} of the batch started a COPY")
        if result.status == pq.ExecStatus.FATAL_ERROR:
            error = errors.error_from_result(result, encoding=encoding)
            piece_index = min(index, len(pieces) - 1)
            position = error.diag.statement_position
            offset = int(position) - 1 - starts[piece_index] if position else None
            if offset is not None and not 0 <= offset <= len(pieces[piece_index].text):
                offset = None
            raise BatchError(error, pieces[piece_index], offset)
