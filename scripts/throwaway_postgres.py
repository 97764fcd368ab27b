"""A throwaway PostgreSQL server in a temporary directory (initdb + pg_ctl), for tests and demos.

PostgreSQL refuses to run as root, so when root the server runs as the ``postgres`` user
(created by Debian's postgresql package). Used by ``tests/fix_pg.py`` and ``scripts/try-local``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from pathlib import Path


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl: $PG_BINDIR, pg_config --bindir, or Debian's layout."""
    candidates = [os.environ.get("PG_BINDIR", "")]
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False).stdout.strip()
        candidates.append(out)
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(p.split("/")[-2]), reverse=True)
    for candidate in candidates:
        if candidate and (Path(candidate) / "initdb").exists():
            return Path(candidate)
    raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ThrowawayPostgres:
    """initdb into ``base``; listen on 127.0.0.1:<port> and a Unix socket in ``base``."""

    def __init__(
        self,
        base: Path,
        *,
        settings: Mapping[str, str] | None = None,
        hba_lines: Iterable[str] = (),
        superuser: str = "postgres",
    ) -> None:
        self.base = base
        self.data = base / "data"
        self.port = free_port()
        self.superuser = superuser
        self.settings = dict(settings or {})
        self.hba_lines = list(hba_lines)
        self.bindir = find_bindir()
        self.run_as = "postgres" if os.geteuid() == 0 else None

    # Files the server must own or read (certificates, keys) are handed over with this.
    def give_to_server(self, path: Path, mode: int = 0o600) -> None:
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            os.chown(path, pw.pw_uid, pw.pw_gid)
        os.chmod(path, mode)

    def _run(self, *args: str) -> None:
        kwargs: dict[str, object] = {}
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            kwargs = {"user": pw.pw_uid, "group": pw.pw_gid, "extra_groups": []}
        subprocess.run([str(self.bindir / args[0]), *args[1:]], check=True, capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]

    def start(self) -> ThrowawayPostgres:
        self.base.mkdir(parents=True, exist_ok=True)
        if self.run_as:
            self.give_to_server(self.base, 0o755)
        self._run(
            "initdb", "-D", str(self.data), "-U", self.superuser, "-A", "trust", "--no-sync", "-E", "UTF8", "--locale=C"
        )
        conf = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.base}'",
            "fsync": "off",  # throwaway data: speed over durability
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            **self.settings,
        }
        with open(self.data / "postgresql.conf", "a") as fh:
            fh.writelines(f"{key} = {value}\n" for key, value in conf.items())
        hba = [*self.hba_lines, "local all all trust", "host all all 127.0.0.1/32 trust"]
        (self.data / "pg_hba.conf").write_text("\n".join(hba) + "\n")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.base / "server.log"), "-w", "-t", "60", "start")
        return self

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")

    def url(self, dbname: str = "postgres", user: str | None = None, *, tcp: bool = True) -> str:
        user = user or self.superuser
        if tcp:
            return f"postgresql://{user}@127.0.0.1:{self.port}/{dbname}"
        return f"postgresql://{user}@/{dbname}?host={self.base}&port={self.port}"

    def log(self) -> str:
        path = self.base / "server.log"
        return path.read_text(errors="replace") if path.exists() else ""


def main() -> None:
    """Start a throwaway server in DIR and print its URL, or stop the one in DIR."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("action", choices=["start", "stop"])
    parser.add_argument("--dir", type=Path, required=True, help="the server's directory (created by start)")
    args = parser.parse_args()
    server = ThrowawayPostgres(args.dir)
    if args.action == "start":
        print(server.start().url())
    else:
        server.stop()


if __name__ == "__main__":
    main()
