#!/usr/bin/env bash
# image.sh [--binary ARCH=PATH]... [--berth PATH] [--out FILE] [--context DIR] [--no-check] [-- BUILD-ARGS…]
#
# Builds berth's own container image with `berth build` (dogfooding) from the Dockerfile at the
# repository's root, then checks that podman runs every platform of it (arm64 through
# qemu-user binfmt) and that each answers /v2/ as berth does.
#
# Without --binary it first builds the stripped release binaries itself:
#   linux/amd64  cargo build --profile dist -p berth
#   linux/arm64  the same for aarch64-unknown-linux-gnu (rustup's rust-std for that target and
#                Debian's gcc-aarch64-linux-gnu as linker; installed when missing)
# With --binary (repeatable) it packs the binaries given (the tests pass their own debug
# binary for amd64, so CI builds nothing twice).
#
#   scripts/image.sh                                     # both platforms -> target/berth-image.oci.tar
#   scripts/image.sh -- -t registry.example/berth:1.0 --push
#
# --berth: the berth that runs the build (default: the amd64 binary). --out: the OCI archive
# written (default target/berth-image.oci.tar). --context: where the build context is made
# (default target/image-context; it is remade on every run). Needs root (berth build), podman, and the
# packages scripts/test.sh installs.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

binaries=(); berth=""; out="$root/target/berth-image.oci.tar"; context="$root/target/image-context"
check=1; extra=()
while [ $# -gt 0 ]; do
    case $1 in
        --binary) binaries+=("$2"); shift 2;;
        --berth) berth=$2; shift 2;;
        --out) out=$2; shift 2;;
        --context) context=$2; shift 2;;
        --no-check) check=0; shift;;
        --) shift; extra=("$@"); break;;
        *) echo "usage: $0 [--binary ARCH=PATH]... [--berth PATH] [--out FILE] [--context DIR] [--no-check] [-- BUILD-ARGS...]" >&2; exit 2;;
    esac
done
log() { printf '\n==> %s\n' "$*" >&2; }

if [ ${#binaries[@]} -eq 0 ]; then
    log "building the linux/amd64 binary (profile dist)"
    cargo build --locked --profile dist -p berth
    binaries+=("amd64=$root/target/dist/berth")
    log "building the linux/arm64 binary (profile dist, aarch64-unknown-linux-gnu)"
    if ! command -v aarch64-linux-gnu-gcc >/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            gcc-aarch64-linux-gnu libc6-dev-arm64-cross >&2
    fi
    rustup target list --installed | grep -qx aarch64-unknown-linux-gnu ||
        rustup target add aarch64-unknown-linux-gnu >&2
    CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc \
    CC_aarch64_unknown_linux_gnu=aarch64-linux-gnu-gcc \
    CXX_aarch64_unknown_linux_gnu=aarch64-linux-gnu-g++ \
    AR_aarch64_unknown_linux_gnu=aarch64-linux-gnu-ar \
        cargo build --locked --profile dist -p berth --target aarch64-unknown-linux-gnu
    binaries+=("arm64=$root/target/aarch64-unknown-linux-gnu/dist/berth")
fi
platforms=()
for b in "${binaries[@]}"; do
    platforms+=("linux/${b%%=*}")
    [ -n "$berth" ] || [ "${b%%=*}" != amd64 ] || berth=${b#*=}
done
[ -n "$berth" ] || { echo "image.sh: give --berth (no amd64 binary to build with)" >&2; exit 2; }
platform_list=$(IFS=,; echo "${platforms[*]}")

log "build context in $context"
scripts/image-context.sh "$context" "${binaries[@]}"

log "berth build --platform $platform_list"
mkdir -p "$(dirname "$out")"
"$berth" build --progress plain --platform "$platform_list" -f Dockerfile \
    -o "type=oci,dest=$out" "${extra[@]}" "$context" >&2
"$berth" inspect "oci-archive:$out" >&2

[ "$check" = 1 ] || exit 0
# A private podman per platform (scripts/podman-env.sh: one image store each, since podman
# refuses a second platform of the same archive in one store); host networking, so nothing on
# the host changes.
penv=$(mktemp -d /tmp/berth-image-check.XXXXXX)
PODMAN_FLAGS=""
# Only ever the private store's containers (PODMAN_FLAGS names it), never the host's.
cleanup() {
    if [ -n "$PODMAN_FLAGS" ]; then podman $PODMAN_FLAGS rm -af >/dev/null 2>&1 || true; fi
    rm -rf "$penv"
}
trap cleanup EXIT
for p in "${platforms[@]}"; do
    envs=$(scripts/podman-env.sh "$penv/${p//\//-}")
    eval "$envs"
    : "${PODMAN_FLAGS:?podman-env.sh set no PODMAN_FLAGS}"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    log "podman run --platform $p (port $port)"
    name="berth-check-${p//\//-}"
    podman $PODMAN_FLAGS run -d --name "$name" --platform "$p" --network host \
        -e BERTH_LISTEN="127.0.0.1:$port" -e BERTH_METRICS_LISTEN=off \
        -v "$name-data:/data" "oci-archive:$out" serve >/dev/null
    ok=0
    for _ in $(seq 1 120); do
        if headers=$(curl -s -o /dev/null -D - "http://127.0.0.1:$port/v2/" 2>/dev/null) &&
            grep -qi '^berth-ecr-auth:' <<<"$headers"; then
            ok=1; break
        fi
        sleep 0.5
    done
    if [ "$ok" != 1 ]; then
        podman $PODMAN_FLAGS logs "$name" >&2 || true
        echo "image.sh: the $p image did not answer /v2/" >&2
        exit 1
    fi
    { podman $PODMAN_FLAGS logs "$name" 2>/dev/null || true; } | head -1 >&2 || true
    echo "image.sh: $p answers /v2/ ($(grep -i '^HTTP/' <<<"$headers" | tr -d '\r'))"
    podman $PODMAN_FLAGS rm -f "$name" >/dev/null
    podman $PODMAN_FLAGS volume rm -f "$name-data" >/dev/null
done
