"""The runner instance's user data: shellcheck, and its lifecycle run under bash with stub commands.

The stubs stand in for what only exists on an EC2 instance (IMDS through curl, the aws CLI, dnf,
runuser, shutdown); everything else (bash, sha256sum, tar) is real. The script runs for real.
"""

from __future__ import annotations

import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

from infra import artifacts
from runner import __version__
from runner.control_plane import trace
from runner.control_plane.bootstrap import placeholders, render
from simulator.instance import RUN_SH
from tests.control_plane import emf_spec
from tests.fix_bootstrap import JIT, Boot, values


def test_renders_every_placeholder_shell_quoted_and_refuses_unknown_ones():
    script = render(values(LOG_GROUP="/x; rm -rf /"))
    assert "@@" not in script and "LOG_GROUP='/x; rm -rf /'" in script
    with pytest.raises(ValueError, match="missing"):
        render({"REGION": "x"})
    with pytest.raises(ValueError, match="unknown"):
        render(values(EXTRA="1"))
    assert placeholders() == set(values())


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed (.ci/run installs it)")
def test_rendered_script_passes_shellcheck(tmp_path: Path):
    path = tmp_path / "user-data.sh"
    path.write_text(render(values()))
    result = subprocess.run(["shellcheck", "--severity=style", str(path)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout


def test_happy_path_reads_and_deletes_its_config_runs_one_job_then_terminates(boot: Boot):
    result = boot.run(jit_after=1)
    assert result.returncode == 0, result.stderr
    order = boot.order(
        "aws ssm get-parameter",
        "sleep 3",
        "aws ssm delete-parameter",
        "runuser -u runner -- ./run.sh",
        f"run.sh jit={JIT}",
        "shutdown -h now",
    )
    assert order == sorted(order)
    lines = boot.lines()
    assert "--name /vpc-runners/prod/jit/i-0123456789abcdef0 --with-decryption" in next(
        line for line in lines if line.startswith("aws ssm get-parameter")
    )
    assert not any(JIT in line for line in lines if not line.startswith("run.sh")), "JIT config on a command line"
    runner_env = (boot.root / "opt/actions-runner/.env").read_text()
    assert "VPC_MIGRATE_SSM_PARAMETER=/vpc-runners/prod/databases/orders" in runner_env
    assert f"PGSSLROOTCERT={boot.root}/etc/vpc-runner-kit/rds-global-bundle.pem" in runner_env
    assert (boot.root / "etc/vpc-runner-kit/rds-global-bundle.pem").read_text() == "RDS CA\n"
    assert "runner exited with status 0" in (boot.root / "var/log/vpc-runner.log").read_text()
    assert any(
        line.startswith("aws s3 cp --region eu-central-1 --only-show-errors s3://vpc-runners-pkg/") for line in lines
    )
    (install,) = [line for line in lines if line.startswith("pip install")]
    assert "--no-index" in install and "--require-hashes" in install and "--only-binary=:all:" in install
    assert f"-r {boot.root}/opt/vpc-runner-kit/package/requirements.txt" in install


def test_a_failed_job_still_terminates_the_instance(boot: Boot):
    result = boot.run(runner_exit=3)
    assert result.returncode == 3
    assert boot.order("run.sh", "shutdown -h now") == sorted(boot.order("run.sh", "shutdown -h now"))


def test_the_instance_ends_itself_by_shutting_down_never_by_an_api_call(boot: Boot):
    """Shutdown terminates (the launch template's shutdown behaviour): the role needs no TerminateInstances."""
    boot.run()
    assert boot.lines()[-1] == "shutdown -h now"
    assert not [line for line in boot.lines() if line.startswith("aws ec2")], "the instance role grants no EC2 call"


def test_checksum_mismatch_never_runs_the_download_and_terminates(boot: Boot):
    result = boot.run(RUNNER_SHA256="f" * 64)
    assert result.returncode != 0
    lines = boot.lines()
    assert not any(line.startswith(("runuser", "run.sh", "aws ssm")) for line in lines)
    assert "shutdown -h now" in lines
    assert "checksum mismatch" in (boot.root / "var/log/vpc-runner.log").read_text()


def test_no_jit_config_in_time_terminates_without_running(boot: Boot):
    result = boot.run(jit_after=10_000, JIT_WAIT_S="0")
    assert result.returncode != 0
    assert not any(line.startswith("runuser") for line in boot.lines())
    assert boot.lines()[-1] == "shutdown -h now"


@pytest.mark.parametrize(("hold_s", "ceiling", "expected_max"), [(120, "3600", 120), (100_000, "300", 300)])
def test_a_held_runner_waits_before_terminating_up_to_the_ceiling(
    boot: Boot, hold_s: int, ceiling: str, expected_max: int
):
    result = boot.run(runner_exit=1, hold_s=hold_s, HOLD_CEILING_S=ceiling)
    assert result.returncode == 1
    lines = boot.lines()
    (wait,) = [
        int(line.split()[1]) for line in lines if line.startswith("sleep ") and line not in ("sleep 3", "sleep 1")
    ]
    assert expected_max - 5 <= wait <= expected_max
    order = boot.order("run.sh", "pkill -KILL -u runner", f"sleep {wait}", "shutdown -h now")
    assert order == sorted(order), "the job's processes are killed before the hold"
    assert "held for debugging" in (boot.root / "var/log/vpc-runner.log").read_text()


def test_job_environment_names_the_instance_and_the_hold_file(boot: Boot):
    boot.run()
    env = (boot.root / "opt/actions-runner/.env").read_text()
    assert "VPC_RUNNER_INSTANCE_ID=i-0123456789abcdef0" in env
    assert f"VPC_RUNNER_HOLD_FILE={boot.root}/run/vpc-runner/hold-until" in env


def test_boot_installs_the_shipped_runner_package_offline_and_hash_checked(boot: Boot, tmp_path: Path):
    """The real wheelhouse the stack uploads (infra.artifacts), installed by the real user-data code path."""
    package = shutil.make_archive(str(tmp_path / "package"), "zip", artifacts.runner_package())
    result = boot.run(package=Path(package))
    assert result.returncode == 0, (boot.root / "var/log/vpc-runner.log").read_text()[-3000:]
    vpc_migrate = boot.root / "usr/local/bin/vpc-migrate"
    version = subprocess.run([str(vpc_migrate), "--version"], capture_output=True, text=True, check=True).stdout
    assert version.split() == ["vpc-migrate", __version__]
    installed = subprocess.run(
        [str(boot.root / "opt/vpc-runner-kit/venv/bin/python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    names = {line.split("==")[0].lower() for line in installed.splitlines()}
    assert {"vpc-runner-kit", "psycopg", "pglast", "boto3"} <= names
    assert not names & {"pyjwt", "pulumi", "pytest", "moto"}, "only what vpc-migrate runs ships to the runner"


def test_a_tampered_wheel_is_refused_at_boot_and_the_instance_terminates(boot: Boot, tmp_path: Path):
    tampered = tmp_path / "tampered"
    shutil.copytree(artifacts.runner_package(), tampered)
    (wheel,) = (tampered / "wheels").glob("vpc_runner_kit-*.whl")
    with zipfile.ZipFile(wheel, "a") as z:
        z.writestr("runner/backdoor.py", "print('owned')\n")
    package = shutil.make_archive(str(tmp_path / "package"), "zip", tampered)
    result = boot.run(package=Path(package))
    assert result.returncode != 0
    assert not any(line.startswith("runuser") for line in boot.lines())
    assert "THESE PACKAGES DO NOT MATCH THE HASHES" in (boot.root / "var/log/vpc-runner.log").read_text()
    assert boot.lines()[-1] == "shutdown -h now"


def test_each_boot_milestone_is_traced_with_valid_emf_metrics(boot: Boot):
    result = boot.run()
    assert result.returncode == 0, result.stderr
    lines = trace.parse(boot.trace_lines())
    assert [line["trace"] for line in lines] == ["boot_started", "software_ready", "config_fetched", "runner_online"]
    assert {line["instance_id"] for line in lines} == {"i-0123456789abcdef0"}
    assert {line["Fleet"] for line in lines} == {"prod"}
    metrics = {name for line in lines[1:] for name in line if name in trace.INTERVALS}
    assert metrics == {"InstallTime", "ConfigWait", "RunnerStart", "BootTime"}
    for line in lines[1:]:
        assert emf_spec.problems(line) == [], line
    # The runner's own output still reaches the log; the milestone came from its "Listening for Jobs".
    assert "Listening for Jobs" in (boot.root / "var/log/vpc-runner.log").read_text()
    at = [trace.epoch(line["at"]) for line in lines]
    assert at == sorted(at)
    assert lines[3]["BootTime"] == pytest.approx(at[3] - at[0], abs=0.002)


def test_a_baked_image_boots_without_any_download(boot: Boot, tmp_path: Path):
    """The bake installs everything; a boot from that image fetches only its config (no dnf, no curl but
    IMDS, no S3, no pip) and runs the job."""
    image = Boot(tmp_path / "image")
    baked = image.run(mode="bake", RUNNER_SHA256=boot.sha256)
    assert baked.returncode == 0, (image.root / "var/log/vpc-runner.log").read_text()
    assert image.lines()[-1] == "shutdown -h now", "the bake stops the instance for its snapshot"
    record = (image.root / "etc/vpc-runner-kit/baked").read_text().splitlines()
    assert [line.split("=", 1)[0] for line in record] == ["PREREQUISITES", "PACKAGE_ID", "RUNNER"]
    assert record[1:] == [f"PACKAGE_ID={'a' * 64}", f"RUNNER=2.338.0/x64/{boot.sha256}"]
    assert len(record[0].removeprefix("PREREQUISITES=")) == 64  # the prerequisites' own fingerprint
    assert not any(line.startswith(("aws ssm", "runuser")) for line in image.lines()), "no config, no job"
    assert not (image.root / "var/log/vpc-runner-trace.log").exists()
    image.copy_image_to(boot)
    result = boot.run()
    assert result.returncode == 0, result.stderr
    lines = boot.lines()
    downloads = [line for line in lines if line.startswith(("dnf", "aws s3", "pip", "python3.11", "useradd"))]
    downloads += [line for line in lines if line.startswith("curl") and "169.254.169.254" not in line]
    assert downloads == []
    assert boot.order("aws ssm get-parameter", "run.sh", "shutdown -h now") == sorted(
        boot.order("aws ssm get-parameter", "run.sh", "shutdown -h now")
    )
    log = (boot.root / "var/log/vpc-runner.log").read_text()
    assert "baked image: kit present" in log and "baked image: runner 2.338.0 present" in log
    assert "VPC_RUNNER_INSTANCE_ID=i-0123456789abcdef0" in (boot.root / "opt/actions-runner/.env").read_text()


def test_an_image_baked_for_another_runner_version_downloads_only_the_runner(boot: Boot, tmp_path: Path):
    image = Boot(tmp_path / "image")
    assert image.run(mode="bake", RUNNER_VERSION="2.300.0", RUNNER_SHA256=image.sha256).returncode == 0
    image.copy_image_to(boot)
    assert boot.run().returncode == 0
    lines = boot.lines()
    assert [line for line in lines if "actions-runner-linux-x64-2.338.0" in line], "the stack's runner is fetched"
    assert not [line for line in lines if line.startswith(("dnf", "aws s3", "pip"))], "the rest is baked"


def test_an_image_baked_before_the_prerequisites_changed_installs_them_again(boot: Boot, tmp_path: Path):
    """The record names what was installed, not a constant: a newer script (another package, another CA
    bundle address) finds the image lacking and installs the prerequisites; a runner with another
    checksum is downloaded again."""
    image = Boot(tmp_path / "image")
    assert image.run(mode="bake", RUNNER_SHA256=boot.sha256).returncode == 0
    image.copy_image_to(boot)
    newer = render(values(RUNNER_SHA256=boot.sha256)).replace("postgresql16", "postgresql17")
    assert boot.run(script_text=newer).returncode == 0
    lines = boot.lines()
    assert [line for line in lines if line.startswith("dnf install")], "the prerequisites are installed again"
    assert not [line for line in lines if "actions-runner-linux" in line], "the runner record still matches"


def test_a_job_that_keeps_the_runners_output_open_cannot_keep_the_instance_alive(boot: Boot):
    """A hostile job reopens the runner's stdout through /proc in a detached process that outlives it. The
    user data must still kill what the job left and shut down (with a pipe to the watcher, bash would wait
    for that process: the subprocess's own timeout would fire first and fail this test)."""
    hostile = RUN_SH.replace(
        'date +%s%3N > "$STATE/job-finished"',
        'LISTENER=$$; ( exec >/dev/null 2>&1; setsid bash -c "exec sleep 600" > /proc/$LISTENER/fd/1 2>&1'
        ' < /dev/null & ); date +%s%3N > "$STATE/job-finished"',
    )
    boot.runner(hostile)
    result = boot.run()
    assert result.returncode == 0, result.stderr
    lines = boot.lines()
    assert any(line.startswith("shutdown -h now") for line in lines)
    # The runner user's processes are killed as soon as the runner exits, before the shutdown.
    killed, shut_down = boot.order("pkill -KILL -u runner", "shutdown -h now")
    assert killed < shut_down
    subprocess.run(["pkill", "-f", "exec sleep 600"], check=False)  # pkill is a stub in the boot: end the holder here
