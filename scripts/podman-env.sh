#!/usr/bin/env bash
# podman-env.sh DIR
#
# Creates a private, self-contained podman (and skopeo/buildah) environment
# under DIR and prints the shell lines to use it:
#
#   eval "$(scripts/podman-env.sh /tmp/t1)"
#   podman $PODMAN_FLAGS run --rm oci:FIXTURES/busybox-amd64:latest       # x86_64
#   podman $PODMAN_FLAGS run --rm --platform linux/arm64 \
#       oci:FIXTURES/busybox-arm64:latest                                  # aarch64
#
# Env: INSECURE_REGISTRY=127.0.0.1:PORT (optional; may be a space-separated
# list) marks that registry as plain-HTTP in DIR/registries.conf.
#
# Written for and verified on the Debian 12 test VM (podman 4.3.1, runc 1.1.5,
# crun 1.8.1, cgroup v1 "hybrid" layout, root without CAP_SYS_RESOURCE,
# RLIMIT_NOFILE hard 20000, RLIMIT_NPROC hard 96365, kernel.pid_max 32768).
# Why each setting is there (the error seen without it, as root, using
# `podman --root/--runroot --storage-driver vfs run --rm oci:...`):
#
# containers.conf
#   default_ulimits  REQUIRED. Podman 4.3 asks for nofile/nproc 1048576 by
#       default; the runtime cannot raise hard limits here (no
#       CAP_SYS_RESOURCE), so the container never starts:
#         crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted
#         crun: setrlimit `RLIMIT_NPROC`: Operation not permitted
#         runc: ... error setting rlimits for ready process: error setting
#               rlimit type 6: operation not permitted     (6 = RLIMIT_NPROC)
#       Both limits must be <= the hard limits of the *podman process*, not of
#       the calling shell: podman (4.3) runs with RLIMIT_NPROC 32768 here even
#       though `ulimit -Hu` says 96365, and nproc=4096:96365 still failed with
#       "rlimit type 6". So nofile <= `ulimit -Hn` and nproc <= min(`ulimit
#       -Hu`, 32768). "-1" (= "max") does not help in 4.3: it means unlimited
#       and fails with "rlimit type 7" (RLIMIT_NOFILE).
#   runtime = "runc"  REQUIRED for portability: Debian's crun 1.8 refuses to
#       run containers on this cgroup layout ("cgroups in hybrid mode not
#       supported"); runc 1.1 works. Override with PODMAN_RUNTIME=crun.
#   netns = "none"  Not needed to start a container, but without it a root
#       podman sets up the default netavark bridge, which edits the host:
#       iptables NETAVARK_* chains, /etc/containers/networks/netavark.lock,
#       /run/containers/networks, and needs iptables/netavark to work. Tests
#       that only run a process need no network. Override per container with
#       `--network host` (talk to a registry on 127.0.0.1) if needed.
#   cgroup_manager = "cgroupfs"  There is no systemd (PID 1) here; podman
#       auto-detects cgroupfs, but pinning it avoids "systemd" being chosen on
#       a host that has a systemd user/dbus around and then failing.
#   events_logger = "file"  Same reason (journald is the default when
#       systemd is present); with "file" the log goes under tmp_dir.
#   tmp_dir  Podman's per-host state (alive.lck, events, exits, locks) defaults
#       to /run/libpod and is shared by every podman on the machine whatever
#       --root says; keep it private so parallel tests do not interact.
#   [network] network_config_dir  keeps netavark's config/lock out of
#       /etc/containers/networks.
# storage.conf
#   driver = "vfs", graphroot, runroot  A private image/container store (the
#       same as --storage-driver vfs --root --runroot) so tests never see or
#       change the host's images; vfs needs no overlay/fuse support and copes
#       with any backing filesystem. PODMAN_FLAGS repeats them as flags, which
#       take precedence over any other storage.conf.
# registries.conf
#   No unqualified-search registries (short names fail instead of reaching
#   docker.io), and only INSECURE_REGISTRY is marked insecure (plain HTTP).
#   Note: containers/image still reads /etc/containers/registries.conf.d/
#   (short-name aliases only) even with CONTAINERS_REGISTRIES_CONF set.
# REGISTRY_AUTH_FILE  `podman login` as root otherwise writes
#   /run/containers/0/auth.json, shared by all tests.
# policy.json  The host's /etc/containers/policy.json is "insecureAcceptAnything";
#   podman 4.3 has no env var for another one (podman pull/run take
#   --signature-policy FILE; skopeo takes the global --policy FILE).
#
# Not settable here: root's blob-info cache is always
# /var/lib/containers/cache/blob-info-cache-v1.boltdb (shared, harmless), and
# podman's SHM lock segment /dev/shm/libpod_lock is shared by all podman
# instances (fine: locks are allocated, not reused, across stores).
#
# Foreign architectures: arm64 images run through qemu-user-static's binfmt
# handler (registered with the F flag, so it works inside the container's
# mount namespace). If /proc/sys/fs/binfmt_misc is empty, this script mounts
# it and runs `update-binfmts --enable qemu-aarch64` (needs root).

set -euo pipefail

if [ $# -ne 1 ]; then
    echo "usage: $0 DIR" >&2
    exit 2
fi
mkdir -p "$1"
DIR=$(cd "$1" && pwd)
mkdir -p "$DIR/root" "$DIR/runroot" "$DIR/tmp" "$DIR/networks"

hard_nofile=$(ulimit -Hn)
hard_nproc=$(ulimit -Hu)
[ "$hard_nofile" = unlimited ] && hard_nofile=1048576
[ "$hard_nproc" = unlimited ] && hard_nproc=32768
nofile=$(( hard_nofile < 1048576 ? hard_nofile : 1048576 ))
nproc=$(( hard_nproc < 32768 ? hard_nproc : 32768 ))
runtime=${PODMAN_RUNTIME:-runc}

cat > "$DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "none"

[engine]
runtime = "$runtime"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$DIR/tmp"

[network]
network_config_dir = "$DIR/networks"
EOF

cat > "$DIR/storage.conf" <<EOF
[storage]
driver = "vfs"
graphroot = "$DIR/root"
runroot = "$DIR/runroot"
EOF

{
    echo 'unqualified-search-registries = []'
    echo 'short-name-mode = "disabled"'
    for r in ${INSECURE_REGISTRY:-}; do
        printf '\n[[registry]]\nlocation = "%s"\ninsecure = true\n' "$r"
    done
} > "$DIR/registries.conf"


# arm64 emulation for --platform linux/arm64 (best effort).
if [ -d /proc/sys/fs/binfmt_misc ] && [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc 2>/dev/null || true
fi
if [ -e /proc/sys/fs/binfmt_misc/register ] && [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ] &&
    command -v update-binfmts >/dev/null 2>&1; then
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
fi

q() { printf '%q' "$1"; }
echo "export CONTAINERS_CONF=$(q "$DIR/containers.conf")"
echo "export CONTAINERS_STORAGE_CONF=$(q "$DIR/storage.conf")"
echo "export CONTAINERS_REGISTRIES_CONF=$(q "$DIR/registries.conf")"
echo "export REGISTRY_AUTH_FILE=$(q "$DIR/auth.json")"
flags="--root $DIR/root --runroot $DIR/runroot --storage-driver vfs"
echo "export PODMAN_FLAGS=$(q "$flags")"
