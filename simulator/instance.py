"""A runner instance, simulated: the real user data run under bash with stub commands (``Boot``).

The stubs stand in for what only exists on an EC2 instance (IMDS through curl, the aws CLI, dnf,
runuser, shutdown); everything else (bash, date, sha256sum, tar) is real. Every stubbed command
appends its command line to a log (``Boot.lines``). The runner itself is a fake ``run.sh`` in a real
tarball: it prints what the real runner prints around one job (``Listening for Jobs``, ``Running
job``) and records when the job started and ended, for the harness to report as GitHub would.
Used by the offline harness and by the test suite (tests/fix_bootstrap.py).
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

from runner.control_plane.bootstrap import DEFAULT_RUNNER_VERSION, render

STUBS = {
    "curl": r"""
echo "curl $*" >> "$CALLS"
out=""; url=""
while [ $# -gt 0 ]; do
  case "$1" in -o|-H|-X|--retry) [ "$1" = -o ] && out=$2; shift 2;; -*) shift;; *) url=$1; shift;; esac
done
case "$url" in
  */api/token) echo imds-token ;;
  */meta-data/instance-id) echo "${FAKE_INSTANCE_ID:-i-0123456789abcdef0}" ;;
  *actions-runner-linux-*) cp "$FAKE_TARBALL" "$out" ;;
  *global-bundle.pem) echo "RDS CA" > "$out" ;;
  *) exit 22 ;;
esac""",
    "aws": r"""
echo "aws $*" >> "$CALLS"
if [ "$1 $2" = "s3 cp" ]; then
  for last; do :; done
  if [ -n "$FAKE_PACKAGE" ]; then cp "$FAKE_PACKAGE" "$last"; else echo "package" > "$last"; fi
fi
if [ "$1 $2" = "ssm get-parameter" ]; then
  n=$(cat "$STATE/gets" 2>/dev/null || echo 0); echo $((n + 1)) > "$STATE/gets"
  [ "$n" -ge "$JIT_AFTER" ] || exit 255
  echo "$FAKE_JIT"
fi""",
    "runuser": r"""
echo "runuser $*" >> "$CALLS"
while [ "$1" != "--" ]; do shift; done; shift
exec "$@" """,
    "id": 'echo "id $*" >> "$CALLS"; [ -f "$STATE/user-runner" ]',
    "useradd": 'echo "useradd $*" >> "$CALLS"; touch "$STATE/user-runner"',
    # The real interpreter with REAL_PYTHON set; otherwise `-m venv` leaves a pip that only logs.
    "python3.11": r"""
echo "python3.11 $*" >> "$CALLS"
if [ -n "$REAL_PYTHON" ]; then exec "$REAL_PYTHON" "$@"; fi
if [ "$1 $2" = "-m venv" ]; then
  mkdir -p "$3/bin"; printf '#!/bin/bash\necho "pip $*" >> "$CALLS"\n' > "$3/bin/pip"; chmod +x "$3/bin/pip"
fi""",
    "logger": "cat > /dev/null",
}
LOGGING_STUBS = ("shutdown", "dnf", "chown", "amazon-cloudwatch-agent-ctl", "sleep", "pkill")
# What the real runner prints around one job (actions/runner's Runner.Listener), and when it ran it.
RUN_SH = """#!/bin/bash
echo "run.sh jit=$ACTIONS_RUNNER_INPUT_JITCONFIG" >> "$CALLS"
set -a; . ./.env; set +a  # the runner gives every job the variables in .env
echo "√ Connected to GitHub"
echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'): Listening for Jobs"
date +%s%3N > "$STATE/job-started"
echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'): Running job: migrate"
if [ -n "$FAKE_HOLD_S" ]; then echo $(( $(date +%s) + FAKE_HOLD_S )) > "$VPC_RUNNER_HOLD_FILE"; fi
date +%s%3N > "$STATE/job-finished"
echo "$(date -u '+%Y-%m-%d %H:%M:%SZ'): Job migrate completed with result: Succeeded"
exit "${FAKE_RUNNER_EXIT:-0}"
"""
JIT = "eyJydW5uZXJfaWQiOiAxMDAxfQ=="


def values(**overrides: str) -> dict[str, str]:
    """The stack's placeholder values, as a test stack would render them."""
    base = {
        "FLEET": "prod",
        "REGION": "eu-central-1",
        "JIT_PARAMETER_PREFIX": "/vpc-runners/prod/jit",
        "RUNNER_VERSION": DEFAULT_RUNNER_VERSION,
        "RUNNER_ARCH": "x64",
        "RUNNER_SHA256": "0" * 64,
        "DATABASE_PARAMETER": "/vpc-runners/prod/databases/orders",
        "VPC_MIGRATE_PACKAGE": "s3://vpc-runners-pkg/vpc-runner-kit.zip",
        "PACKAGE_ID": "a" * 64,
        "LOG_GROUP": "/vpc-runners/prod/runners",
        "JIT_WAIT_S": "30",
        "HOLD_CEILING_S": "3600",
    }
    return base | overrides


class Boot:
    """One simulated instance, in a scratch directory: its root file system, stubs and call log."""

    def __init__(self, tmp_path: Path) -> None:
        self.root, self.bin, self.state = tmp_path / "root", tmp_path / "bin", tmp_path / "state"
        for d in (self.root, self.bin, self.state):
            d.mkdir(parents=True, exist_ok=True)
        self.calls = tmp_path / "calls.log"
        self.calls.touch()
        for name, body in STUBS.items():
            self._stub(name, body)
        for name in LOGGING_STUBS:
            self._stub(name, f'echo "{name} $*" >> "$CALLS"')
        self.tarball = tmp_path / "runner.tar.gz"
        self.runner(RUN_SH)

    def runner(self, run_sh: str) -> None:
        """The runner tarball the boot downloads, holding this ``run.sh`` (a job's behaviour), and its hash."""
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            data = run_sh.encode()
            info = tarfile.TarInfo("run.sh")
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
        self.tarball.write_bytes(buffer.getvalue())
        self.sha256 = hashlib.sha256(buffer.getvalue()).hexdigest()

    def _stub(self, name: str, body: str) -> None:
        path = self.bin / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)

    def run(
        self,
        *,
        jit_after: int = 1,
        runner_exit: int = 0,
        hold_s: int | None = None,
        package: Path | None = None,
        script_text: str | None = None,
        instance_id: str = "i-0123456789abcdef0",
        mode: str = "boot",
        **overrides: str,
    ) -> subprocess.CompletedProcess[str]:
        """Run the user data rendered from ``overrides`` (or ``script_text``, a stack's own rendering);
        ``mode="bake"`` runs it as the image build does."""
        script = self.root.parent / "user-data.sh"
        script.write_text(script_text or render(values(RUNNER_SHA256=self.sha256) | overrides))
        env = {
            "PATH": f"{self.bin}:{os.environ['PATH']}",
            "VPC_RUNNER_ROOT": str(self.root),
            "VPC_RUNNER_MODE": mode,
            "CALLS": str(self.calls),
            "STATE": str(self.state),
            "FAKE_TARBALL": str(self.tarball),
            "FAKE_JIT": JIT,
            "JIT_AFTER": str(jit_after),
            "FAKE_RUNNER_EXIT": str(runner_exit),
            "FAKE_HOLD_S": "" if hold_s is None else str(hold_s),
            "FAKE_PACKAGE": str(package or ""),
            "FAKE_INSTANCE_ID": instance_id,
            "REAL_PYTHON": sys.executable if package else "",
            # Any attempt to reach the network during boot fails fast.
            "https_proxy": "http://127.0.0.1:9",
            "http_proxy": "http://127.0.0.1:9",
        }
        return subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True, timeout=180, check=False)

    def lines(self) -> list[str]:
        return self.calls.read_text().splitlines()

    def order(self, *prefixes: str) -> list[int]:
        lines = self.lines()
        return [next(i for i, line in enumerate(lines) if line.startswith(p)) for p in prefixes]

    def trace_lines(self) -> list[str]:
        path = self.root / "var/log/vpc-runner-trace.log"
        return path.read_text().splitlines() if path.exists() else []

    def job_times(self) -> tuple[float, float] | None:
        """(started, finished) epoch seconds of the job the fake runner ran, if it ran one."""
        started, finished = self.state / "job-started", self.state / "job-finished"
        if not (started.exists() and finished.exists()):
            return None
        return int(started.read_text()) / 1000, int(finished.read_text()) / 1000

    def copy_image_to(self, other: Boot) -> None:
        """Start ``other`` from this instance's disk (a baked image): its root and the runner user."""
        shutil.copytree(self.root, other.root, dirs_exist_ok=True, symlinks=True)
        if (self.state / "user-runner").exists():
            (other.state / "user-runner").touch()
