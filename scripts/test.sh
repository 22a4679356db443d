#!/usr/bin/env bash
# Runs every Mediaplane test on a fresh or warm machine:
#   1. installs what the tests use when missing (Debian packages from scripts/deps/apt.txt, PyPI packages from
#      scripts/deps/pip.txt into a venv, npm packages from tests/browser/package.json) — idempotent and quiet;
#   2. starts the servers the tests need on loopback: SeaweedFS (S3) on free ports, and PostgreSQL if it is not
#      already running; each test creates and drops its own database;
#   3. checks formatting and lints, then runs `cargo test --workspace` against SQLite+disk and PostgreSQL+S3.
# Everything it starts is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CACHE=${MEDIAPLANE_CACHE:-$HOME/.cache/mediaplane}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$CACHE/target}
mkdir -p "$CACHE"
log() { printf '[test.sh %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

deps() { grep -v '^\s*#' "$1" | sed 's/\s*#.*//' | awk 'NF' | sort -u; }

install_debian() {
  local missing=()
  for pkg in $(deps scripts/deps/apt.txt); do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

install_python() {
  export MEDIAPLANE_TEST_VENV="$CACHE/venv"
  local stamp="$MEDIAPLANE_TEST_VENV/.mediaplane-deps" want
  want=$(deps scripts/deps/pip.txt | sha256sum | cut -d' ' -f1)
  if [ ! -x "$MEDIAPLANE_TEST_VENV/bin/python" ]; then
    log "creating Python venv at $MEDIAPLANE_TEST_VENV"
    python3 -m venv "$MEDIAPLANE_TEST_VENV"
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing PyPI packages: $(deps scripts/deps/pip.txt | tr '\n' ' ')"
    "$MEDIAPLANE_TEST_VENV/bin/pip" install -q --disable-pip-version-check $(deps scripts/deps/pip.txt)
    echo "$want" >"$stamp"
  fi
  # onnxruntime's shared library from the wheel: the face detector's faster engine (images-faces tests).
  local ort_lib
  for ort_lib in "$MEDIAPLANE_TEST_VENV"/lib/python3*/site-packages/onnxruntime/capi/libonnxruntime.so.*; do
    [ -f "$ort_lib" ] && export MEDIAPLANE_TEST_ONNXRUNTIME_LIBRARY="$ort_lib"
  done
}

install_npm() {
  export MEDIAPLANE_TEST_NODE_MODULES="$ROOT/tests/browser/node_modules"
  local stamp="$MEDIAPLANE_TEST_NODE_MODULES/.mediaplane-deps" want
  want=$(sha256sum tests/browser/package.json | cut -d' ' -f1)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    log "installing npm packages for browser tests"
    (cd tests/browser && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --no-audit --no-fund --silent --no-package-lock >/dev/null)
    echo "$want" >"$stamp"
  fi
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

PIDS=()
cleanup() {
  local status=$?
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
  if [ -n "${PG_ADMIN_URL:-}" ]; then
    for db in $(psql "$PG_ADMIN_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'mp_test_%'" 2>/dev/null); do
      psql "$PG_ADMIN_URL" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
    done
  fi
  [ -n "${WORK:-}" ] && rm -rf "$WORK"
  exit $status
}
trap cleanup EXIT INT TERM

start_postgres() {
  PG_ADMIN_URL=${MEDIAPLANE_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
  if ! pg_isready -q -d "$PG_ADMIN_URL" 2>/dev/null; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
      log "starting the machine's PostgreSQL cluster"
      pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
    fi
  fi
  if ! pg_isready -q -d "$PG_ADMIN_URL" 2>/dev/null; then
    local bin port
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    port=$(free_port)
    log "starting a private PostgreSQL on 127.0.0.1:$port"
    mkdir -p "$WORK/pg" && chown postgres "$WORK" "$WORK/pg" 2>/dev/null || true
    su postgres -c "$bin/initdb -D $WORK/pg/data -U postgres --auth=trust -E UTF8" >/dev/null
    su postgres -c "$bin/pg_ctl -D $WORK/pg/data -l $WORK/pg/log -o '-p $port -k $WORK/pg -c listen_addresses=127.0.0.1 -c fsync=off' -w start" >/dev/null
    PG_ADMIN_URL="postgres://postgres@127.0.0.1:$port/postgres"
    PIDS+=("$(head -n1 "$WORK/pg/data/postmaster.pid")")
  fi
  export MEDIAPLANE_TEST_POSTGRES_URL="$PG_ADMIN_URL"
}

start_seaweedfs() {
  local weed="$MEDIAPLANE_TEST_VENV/bin/weed" s3_port master_port volume_port filer_port grpc=()
  s3_port=$(free_port); master_port=$(free_port); volume_port=$(free_port); filer_port=$(free_port)
  # gRPC ports default to port+10000, which overflows for high ephemeral ports: choose them too.
  for service in master volume filer s3; do grpc+=("-$service.port.grpc=$(free_port)"); done
  mkdir -p "$WORK/s3"
  cat >"$WORK/s3.json" <<JSON
{"identities":[{"name":"admin","credentials":[{"accessKey":"mediaplane","secretKey":"mediaplane-secret"}],"actions":["Admin","Read","Write","List","Tagging"]}]}
JSON
  log "starting SeaweedFS S3 on 127.0.0.1:$s3_port"
  "$weed" mini -dir="$WORK/s3" -ip=127.0.0.1 -ip.bind=127.0.0.1 -master.telemetry=false -s3.config="$WORK/s3.json" \
    -admin.ui=false -webdav=false -s3.port="$s3_port" -master.port="$master_port" -volume.port="$volume_port" \
    -filer.port="$filer_port" "${grpc[@]}" >"$WORK/weed.log" 2>&1 &
  PIDS+=("$!")
  for _ in $(seq 1 120); do
    if curl -s -o /dev/null "http://127.0.0.1:$s3_port/"; then break; fi
    sleep 0.5
  done
  curl -s -o /dev/null "http://127.0.0.1:$s3_port/" || { tail -n 30 "$WORK/weed.log" >&2; log "SeaweedFS did not start"; exit 1; }
  export MEDIAPLANE_TEST_S3_ENDPOINT="http://127.0.0.1:$s3_port"
  export MEDIAPLANE_TEST_S3_BUCKET="mediaplane-test"
  export MEDIAPLANE_TEST_S3_ACCESS_KEY_ID="mediaplane"
  export MEDIAPLANE_TEST_S3_SECRET_ACCESS_KEY="mediaplane-secret"
}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/mediaplane-test.XXXXXX")
chmod 755 "$WORK"
install_debian
install_python
install_npm
start_postgres
start_seaweedfs
export MEDIAPLANE_TEST_REQUIRE_EXTERNAL=1
export RUST_BACKTRACE=1

log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
log "cargo test --workspace"
cargo test --workspace "$@"
