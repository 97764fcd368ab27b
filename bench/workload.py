"""The benchmark's migrations: N small ones mixing CREATE TABLE, ALTER TABLE and INSERT, the same for every tool."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    @property
    def sql(self) -> str:
        return "".join(f"{s};\n" for s in self.statements)

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def generate(count: int) -> list[Migration]:
    migrations = []
    for i in range(1, count + 1):
        kind = i % 3
        if kind == 1:
            statements = (f"CREATE TABLE t{i} (id bigint PRIMARY KEY, v text NOT NULL DEFAULT '')",)
            name = f"create_t{i}"
        elif kind == 2:
            statements = (
                f"ALTER TABLE t{i - 1} ADD COLUMN c{i} integer",
                f"CREATE INDEX t{i - 1}_c{i} ON t{i - 1} (c{i})",
            )
            name = f"alter_t{i - 1}"
        else:
            statements = (f"INSERT INTO t{i - 2} (id, v) SELECT g, 'row ' || g FROM generate_series(1, 50) g",)
            name = f"fill_t{i - 2}"
        migrations.append(Migration(i, name, statements))
    return migrations
