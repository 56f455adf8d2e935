#!/usr/bin/env bash
# podman-env.sh DIR
#
# Creates a private, self-contained podman environment under DIR (config
# files, image store, state, locks, auth file) and prints shell lines that
# select it:
#
#   eval "$(INSECURE_REGISTRY=127.0.0.1:5000 scripts/podman-env.sh /tmp/t1)"
#   podman run --rm oci:FIXTURES/busybox-amd64:latest                  # x86_64
#   podman run --rm --platform linux/arm64 oci:FIXTURES/busybox-arm64:latest
#                                                                      # aarch64
# Printed: export CONTAINERS_CONF, CONTAINERS_STORAGE_CONF,
# CONTAINERS_REGISTRIES_CONF, REGISTRY_AUTH_FILE, and PODMAN_FLAGS (the
# storage as explicit global flags: `podman $PODMAN_FLAGS ...`; redundant with
# CONTAINERS_STORAGE_CONF but harmless; DIR must not contain spaces for it).
#
# Env: INSECURE_REGISTRY=HOST:PORT (optional; a space-separated list is
# allowed) marks that registry as plain-HTTP/insecure in registries.conf.
# Running the script again REWRITES the files, so pass INSECURE_REGISTRY every
# time. PODMAN_RUNTIME overrides the OCI runtime (default runc).
#
# skopeo 1.9 does not read CONTAINERS_REGISTRIES_CONF's "insecure" for its
# own commands (it always sends an explicit tls-verify=true): use
# `skopeo copy --dest-tls-verify=false` / `skopeo inspect --tls-verify=false`.
# It does honour CONTAINERS_STORAGE_CONF for containers-storage: references.
#
# Verified on the Debian 12 test VM: podman 4.3.1, runc 1.1.5, crun 1.8.1,
# cgroup v1 + v2 "hybrid" layout, no systemd as PID 1, root without
# CAP_SYS_RESOURCE, `ulimit -Hn` 20000, `ulimit -Hu` 96365, pid_max 32768.
# What each setting is for (errors seen as root with
# `podman --root R --runroot RR --storage-driver vfs run --rm oci:...`):
#
# containers.conf
#   default_ulimits   REQUIRED. By default podman 4.3 (rootful) gives the
#       container nofile and nproc 1048576; the runtime cannot raise hard
#       limits here (no CAP_SYS_RESOURCE), so nothing starts:
#         crun: setrlimit `RLIMIT_NOFILE`: Operation not permitted
#         (with nofile fixed) crun: setrlimit `RLIMIT_NPROC`: Operation not permitted
#         runc: runc create failed: ... error setting rlimits for ready
#               process: error setting rlimit type 6: operation not permitted
#       The limits must be <= the hard limits of the podman *process*, which
#       are not the shell's: /proc/<podman>/limits showed "Max processes 32768"
#       (= kernel.pid_max here) while `ulimit -Hu` is 96365, and
#       nproc=4096:96365 still failed with "rlimit type 6"; 32768 works. Hence
#       nofile = `ulimit -Hn` and nproc = min(`ulimit -Hu`, pid_max, 32768).
#       "-1" ("max") does not help in 4.3: it becomes unlimited and fails with
#       "rlimit type 7" (RLIMIT_NOFILE).
#   runtime = "runc"   REQUIRED. With default_ulimits fixed, Debian's crun
#       1.8 still fails: "crun: cgroups in hybrid mode not supported, drop all
#       controllers from cgroupv2". runc 1.1 works.
#   netns = "none"   Not needed to start a container, but without it rootful
#       podman attaches the default netavark bridge, which changes the host:
#       iptables NETAVARK_* chains (filter FORWARD, nat PRE/POSTROUTING),
#       /etc/containers/networks/netavark.lock, a /run/netns mount. The test
#       images need no network. Use `--network host` on a container that must
#       reach a registry on 127.0.0.1.
#   lock_type = "file"   Default "shm" uses ONE segment, /dev/shm/libpod_lock
#       (2048 locks), shared by every podman on the host regardless of
#       --root; containers left behind in a deleted DIR keep their locks until
#       reboot, so leaky test runs can exhaust it ("exceeded num_locks").
#       "file" keeps the locks in DIR/tmp/locks (verified to work in 4.3;
#       nothing is created in /dev/shm).
#   tmp_dir   Defaults to /run/libpod (alive.lck, events, exits) and is shared
#       by all podman instances whatever --root says; kept under DIR.
#   cgroup_manager = "cgroupfs", events_logger = "file"   Not required here
#       (with no systemd as PID 1 podman already picks these), pinned so a
#       host with systemd does not switch to systemd/journald.
#   [network] network_config_dir   keeps netavark's config/lock out of
#       /etc/containers/networks.
# storage.conf
#   driver "vfs", graphroot, runroot under DIR: a private image/container
#   store, so tests never see or change the host's images; vfs needs no
#   overlay or fuse support.
# registries.conf
#   No unqualified-search registries (short names fail instead of reaching
#   out), only INSECURE_REGISTRY marked insecure. containers/image still reads
#   /etc/containers/registries.conf.d/*.conf (short-name aliases) on top.
# REGISTRY_AUTH_FILE   `podman login` as root otherwise writes the shared
#   /run/containers/0/auth.json. Podman 4.3 fails with "stat .../auth.json: no
#   such file or directory" if the file named there does not exist, so it is
#   created ({"auths":{}}).
#
# Host state still shared (not configurable in podman 4.3, harmless):
# /var/lib/containers/cache/blob-info-cache-v1.boltdb, the runtime state dir
# /run/runc, and an empty /run/containers/networks. Signature policy: the
# host's /etc/containers/policy.json ("insecureAcceptAnything"); podman has no
# env var for another one (`--signature-policy FILE` on pull/run/push).
#
# Foreign architectures: arm64 images run through qemu-user-static's binfmt
# handler (registered with the F flag, so it works inside the container's
# mount namespace). If /proc/sys/fs/binfmt_misc is not mounted, this script
# mounts it and runs `update-binfmts --enable qemu-aarch64` (root only).

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
pid_max=$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)
nofile=$(( hard_nofile < 1048576 ? hard_nofile : 1048576 ))
nproc=$(( hard_nproc < pid_max ? hard_nproc : pid_max ))
nproc=$(( nproc < 32768 ? nproc : 32768 ))
runtime=${PODMAN_RUNTIME:-runc}

cat > "$DIR/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
netns = "none"

[engine]
runtime = "$runtime"
lock_type = "file"
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

# podman 4.3 fails ("stat ...auth.json: no such file") if REGISTRY_AUTH_FILE
# does not exist yet.
[ -f "$DIR/auth.json" ] || printf '%s\n' '{"auths":{}}' > "$DIR/auth.json"

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
