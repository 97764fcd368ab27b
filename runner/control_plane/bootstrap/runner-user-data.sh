#!/bin/bash
# vpc-runner-kit: boot one ephemeral GitHub Actions runner (Amazon Linux 2023). Rendered by the
# stack: each placeholder between double at-signs is replaced with a shell-quoted value at `pulumi up`.
# Runs once at boot as root: fetch this instance's just-in-time runner config, run exactly one job
# as an unprivileged user, then terminate the instance, whatever happened (trap on EXIT).
# With VPC_RUNNER_MODE=bake (scripts/bake-image), it installs everything a boot needs instead, and stops
# the instance for its disk to become an image: a boot from that image then downloads nothing.
set -euo pipefail

FLEET=@@FLEET@@
REGION=@@REGION@@
JIT_PARAMETER=@@JIT_PARAMETER_PREFIX@@
RUNNER_VERSION=@@RUNNER_VERSION@@
RUNNER_ARCH=@@RUNNER_ARCH@@
RUNNER_SHA256=@@RUNNER_SHA256@@
DATABASE_PARAMETER=@@DATABASE_PARAMETER@@
VPC_MIGRATE_PACKAGE=@@VPC_MIGRATE_PACKAGE@@
# The SHA-256 of the package's hash-pinned requirements.txt: it names this build of the kit.
PACKAGE_ID=@@PACKAGE_ID@@
LOG_GROUP=@@LOG_GROUP@@
JIT_WAIT_S=@@JIT_WAIT_S@@
HOLD_CEILING_S=@@HOLD_CEILING_S@@

# VPC_RUNNER_ROOT is empty on an instance; the tests point it at a scratch directory.
ROOT=${VPC_RUNNER_ROOT:-}
RUNNER_HOME=$ROOT/opt/actions-runner
KIT_HOME=$ROOT/opt/vpc-runner-kit
RDS_CA_BUNDLE=$ROOT/etc/vpc-runner-kit/rds-global-bundle.pem
RDS_CA_URL=https://truststore.pki.rds.amazonaws.com/global/global-bundle.pem
LOG=$ROOT/var/log/vpc-runner.log
# One JSON line per boot milestone (runner/control_plane/trace.py), with EMF metrics for its intervals.
TRACE_LOG=$ROOT/var/log/vpc-runner-trace.log
# What a baked image already holds: written by the bake, compared at boot.
BAKED=$ROOT/etc/vpc-runner-kit/baked
MODE=${VPC_RUNNER_MODE:-boot}
CW_CONFIG=$ROOT/opt/aws/amazon-cloudwatch-agent/etc/vpc-runner.json
# A job that fails with `vpc-migrate --hold-on-failure` writes an epoch second here.
HOLD_FILE=$ROOT/run/vpc-runner/hold-until
IMDS=http://169.254.169.254
INSTANCE_ID=unknown

mkdir -p "$(dirname "$LOG")"
# Everything this script says goes to a file the CloudWatch agent ships, and to the journal
# (`journalctl -t vpc-runner` in an SSM session).
exec > >(tee -a "$LOG" | logger -t vpc-runner) 2>&1

log() { printf '%s vpc-runner: %s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$*"; }

now_ms() { date +%s%3N; }

# trace MILESTONE [METRIC=SINCE_MS ...]: one trace line; each METRIC is the seconds since SINCE_MS.
trace() {
  local milestone=$1 at names="" values="" pair name since elapsed
  at=$(now_ms)
  shift
  for pair in "$@"; do
    name=${pair%%=*} since=${pair#*=}
    elapsed=$((at - since))
    [ "$elapsed" -ge 0 ] || elapsed=0 # a clock step back: never a negative (or malformed) number
    names+="${names:+,}{\"Name\":\"$name\",\"Unit\":\"Seconds\"}"
    values+=",\"$name\":$((elapsed / 1000)).$(printf '%03d' $((elapsed % 1000)))"
  done
  local iso
  iso=$(date -u -d "@$((at / 1000))" +%Y-%m-%dT%H:%M:%S).$(printf '%03d' $((at % 1000)))Z
  local emf=""
  [ -z "$names" ] || emf="\"_aws\":{\"Timestamp\":$at,\"CloudWatchMetrics\":[{\"Namespace\":\"vpc-runners\",\"Dimensions\":[[\"Fleet\"]],\"Metrics\":[$names]}]},"
  printf '{%s"Fleet":"%s","trace":"%s","at":"%s","instance_id":"%s"%s}\n' \
    "$emf" "$FLEET" "$milestone" "$iso" "$INSTANCE_ID" "$values" >>"$TRACE_LOG"
  echo "$at"
}

imds() {
  local token
  token=$(curl -sSf --retry 5 -X PUT "$IMDS/latest/api/token" -H "X-aws-ec2-metadata-token-ttl-seconds: 300")
  curl -sSf --retry 5 -H "X-aws-ec2-metadata-token: $token" "$IMDS/latest/$1"
}

# shellcheck disable=SC2317  # called by the EXIT trap
finish() {
  local status=$?
  trap - EXIT
  hold_if_asked
  # The launch template's instance-initiated shutdown behaviour is terminate: shutting down ends the
  # instance. The role grants no ec2:TerminateInstances; the reaper's maximum lifetime is the backstop.
  log "done (status $status): shutting down, which terminates $INSTANCE_ID"
  shutdown -h now
  exit "$status"
}

# shellcheck disable=SC2317  # called from finish
hold_if_asked() {
  local until now ceiling
  until=$(cat "$HOLD_FILE" 2>/dev/null || true)
  case "$until" in '' | *[!0-9]*) return 0 ;; esac
  now=$(date +%s)
  ceiling=$((now + HOLD_CEILING_S))
  [ "$until" -le "$ceiling" ] || until=$ceiling
  if [ "$until" -gt "$now" ]; then
    # Nothing of the job keeps running while the instance waits for a developer.
    pkill -KILL -u runner || true
    log "held for debugging for $((until - now))s: aws ssm start-session --target $INSTANCE_ID --region $REGION"
    sleep $((until - now))
  fi
}

# from_beginning: the agent tails a file it has not seen from its end, and the first lines (boot_started)
# were written before it started.
ship_logs() {
  mkdir -p "$(dirname "$CW_CONFIG")"
  cat >"$CW_CONFIG" <<JSON
{"logs": {"logs_collected": {"files": {"collect_list": [
  {"file_path": "$LOG", "log_group_name": "$LOG_GROUP", "log_stream_name": "{instance_id}/bootstrap",
   "from_beginning": true},
  {"file_path": "$TRACE_LOG", "log_group_name": "$LOG_GROUP", "log_stream_name": "{instance_id}/trace",
   "from_beginning": true},
  {"file_path": "$RUNNER_HOME/_diag/*.log", "log_group_name": "$LOG_GROUP", "log_stream_name": "{instance_id}/runner"}
]}}}}
JSON
  amazon-cloudwatch-agent-ctl -a fetch-config -m ec2 -s -c "file:$CW_CONFIG" >/dev/null || log "CloudWatch agent did not start"
}

install_prerequisites() {
  dnf install -y -q libicu tar gzip git jq python3.11 python3.11-pip postgresql16 amazon-cloudwatch-agent
  mkdir -p "$(dirname "$RDS_CA_BUNDLE")"
  curl -sSf --retry 5 -o "$RDS_CA_BUNDLE.tmp" "$RDS_CA_URL"
  mv "$RDS_CA_BUNDLE.tmp" "$RDS_CA_BUNDLE"
}

install_kit() {
  # vpc-migrate and its locked dependencies, from the wheelhouse the stack uploaded: hash-checked,
  # offline (nothing from PyPI at boot).
  [ -n "$VPC_MIGRATE_PACKAGE" ] || return 0
  rm -rf "$KIT_HOME" && mkdir -p "$KIT_HOME" "$ROOT/usr/local/bin"
  aws s3 cp --region "$REGION" --only-show-errors "$VPC_MIGRATE_PACKAGE" "$KIT_HOME.zip"
  python3.11 -m zipfile -e "$KIT_HOME.zip" "$KIT_HOME/package"
  python3.11 -m venv "$KIT_HOME/venv"
  "$KIT_HOME/venv/bin/pip" install --quiet --disable-pip-version-check --isolated --no-index \
    --find-links "$KIT_HOME/package/wheels" --only-binary=:all: --require-hashes \
    -r "$KIT_HOME/package/requirements.txt"
  ln -sf "$KIT_HOME/venv/bin/vpc-migrate" "$ROOT/usr/local/bin/vpc-migrate"
  rm -f "$KIT_HOME.zip"
}

install_runner() {
  local tarball=actions-runner-linux-$RUNNER_ARCH-$RUNNER_VERSION.tar.gz
  add_runner_user
  mkdir -p "$RUNNER_HOME"
  curl -sSfL --retry 5 -o "$RUNNER_HOME/$tarball" \
    "https://github.com/actions/runner/releases/download/v$RUNNER_VERSION/$tarball"
  echo "$RUNNER_SHA256  $RUNNER_HOME/$tarball" | sha256sum -c - >/dev/null || {
    log "checksum mismatch for $tarball: refusing to run it"
    return 1
  }
  tar -xzf "$RUNNER_HOME/$tarball" -C "$RUNNER_HOME"
  rm -f "$RUNNER_HOME/$tarball"
}

add_runner_user() {
  id runner >/dev/null 2>&1 || useradd --system --create-home --shell /bin/bash runner
}

# baked KEY VALUE: whether the image was baked with KEY=VALUE (for this stack's runner, kit).
baked() { [ -f "$BAKED" ] && grep -qxF "$1=$2" "$BAKED"; }

# What the image must hold, each as one value the bake records: the prerequisites as this script installs
# them (its own install_prerequisites and the CA bundle's address: a change to either is a new value), and
# the runner by version, architecture and the tarball's checksum.
prerequisites_id() { { declare -f install_prerequisites; echo "$RDS_CA_URL"; } | sha256sum | cut -d' ' -f1; }
RUNNER_ID=$RUNNER_VERSION/$RUNNER_ARCH/$RUNNER_SHA256

install_what_the_image_lacks() {
  if baked PREREQUISITES "$(prerequisites_id)"; then
    log "baked image: prerequisites and CA bundle present"
  else
    install_prerequisites
  fi
  ship_logs
  if baked PACKAGE_ID "$PACKAGE_ID"; then log "baked image: kit present"; else install_kit; fi
  if baked RUNNER "$RUNNER_ID"; then
    log "baked image: runner $RUNNER_VERSION present"
  else
    install_runner
  fi
}

configure_runner() {
  add_runner_user
  # Environment of every job: where vpc-migrate finds the database without any coordinates.
  {
    echo "AWS_REGION=$REGION"
    [ -n "$DATABASE_PARAMETER" ] && echo "VPC_MIGRATE_SSM_PARAMETER=$DATABASE_PARAMETER"
    echo "PGSSLROOTCERT=$RDS_CA_BUNDLE"
    echo "VPC_RUNNER_INSTANCE_ID=$INSTANCE_ID"
    echo "VPC_RUNNER_HOLD_FILE=$HOLD_FILE"
  } >"$RUNNER_HOME/.env"
  mkdir -p "$(dirname "$HOLD_FILE")"
  chown -R runner: "$RUNNER_HOME" "$(dirname "$HOLD_FILE")"
}

# scripts/bake-image launches an instance with this mode, waits for it to stop, and images its disk.
# A failed bake never stops the instance (set -e ends the script first): the waiting script gives up.
bake() {
  install_prerequisites
  ship_logs
  install_kit
  install_runner
  add_runner_user
  mkdir -p "$(dirname "$BAKED")"
  printf 'PREREQUISITES=%s\nPACKAGE_ID=%s\nRUNNER=%s\n' "$(prerequisites_id)" "$PACKAGE_ID" "$RUNNER_ID" >"$BAKED"
  log "baked runner $RUNNER_VERSION and kit $PACKAGE_ID into the image; stopping for the snapshot"
  # Nothing of this build instance's boot is left for the runners started from the image.
  rm -f "$TRACE_LOG" "$HOLD_FILE"
  shutdown -h now
}

# Copies the runner's own output to the log, and traces the moment it listens for its job.
# shellcheck disable=SC2317  # used in a process substitution
watch_runner() {
  local line online=""
  while IFS= read -r line; do
    printf '%s\n' "$line"
    if [ -z "$online" ] && [[ $line == *"Listening for Jobs"* ]]; then
      online=1
      trace runner_online "RunnerStart=$CONFIG_MS" "BootTime=$BOOT_MS" >/dev/null
    fi
  done
}

fetch_jit_config() {
  local name=$JIT_PARAMETER/$INSTANCE_ID deadline=$((SECONDS + JIT_WAIT_S)) value
  until value=$(aws ssm get-parameter --region "$REGION" --name "$name" --with-decryption \
                  --query Parameter.Value --output text 2>/dev/null); do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "no runner configuration at $name after ${JIT_WAIT_S}s"
      return 1
    fi
    sleep 3
  done
  # Gone from SSM before the job starts, so no job (this one or a later one) can fetch it there again.
  aws ssm delete-parameter --region "$REGION" --name "$name" >/dev/null 2>&1 \
    || log "could not delete $name (the reaper will)"
  JIT_CONFIG=$value
}

if [ "$MODE" = bake ]; then
  bake
  exit 0
fi

trap finish EXIT
INSTANCE_ID=$(imds meta-data/instance-id)
[[ $INSTANCE_ID =~ ^i-[0-9a-f]+$ ]] || { log "IMDS gave no instance id"; exit 1; }
mkdir -p "$(dirname "$TRACE_LOG")"
BOOT_MS=$(trace boot_started)
log "instance $INSTANCE_ID starting runner $RUNNER_VERSION"
install_what_the_image_lacks
configure_runner
READY_MS=$(trace software_ready "InstallTime=$BOOT_MS")
fetch_jit_config
CONFIG_MS=$(trace config_fetched "ConfigWait=$READY_MS")

# Passed in the environment, not on the command line, where `ps` shows it to every user. The job runs
# as the same user as the runner, so it can read it from /proc/<pid>/environ: it is this runner's own
# single-use config, and the runner's registration ends with the job (ephemeral).
export ACTIONS_RUNNER_INPUT_JITCONFIG=$JIT_CONFIG
unset JIT_CONFIG
cd "$RUNNER_HOME"
set +e
# The watcher reads the runner's output from a process substitution, not a pipe: bash waits for a pipe's
# reader, and the reader for every writer, so a job that kept the runner's output open (through /proc) in
# a process it left behind would keep the instance from ever shutting down.
runuser -u runner -- ./run.sh > >(watch_runner) 2>&1
status=$? watcher=$!
set -e
# Nothing the job started outlives it: the runner user's processes go before anything else happens.
pkill -KILL -u runner || true
# The watcher ends when the runner's last output is read; one that something still feeds is stopped.
for _ in 1 2 3 4 5; do kill -0 "$watcher" 2>/dev/null || break; sleep 1; done
kill "$watcher" 2>/dev/null || true
unset ACTIONS_RUNNER_INPUT_JITCONFIG
log "runner exited with status $status"
exit "$status"
