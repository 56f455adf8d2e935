#!/usr/bin/env bash
# make-fixtures.sh OUTDIR
#
# Builds deterministic OCI image layouts of a tiny busybox image for the
# integration tests. The only network access is `apt-get download` of the
# busybox-static .deb files from Debian (cached in OUTDIR/debs).
#
# Produces:
#   OUTDIR/busybox/        multi-arch layout: index.json -> image index
#                          (linux/amd64 + linux/arm64/v8), ref name "latest"
#   OUTDIR/busybox-amd64/  single-arch layout: index.json -> amd64 manifest
#   OUTDIR/busybox-arm64/  single-arch layout: index.json -> arm64 manifest
#   OUTDIR/debs/           cached busybox-static_*_{amd64,arm64}.deb
#
# Each image: one gzip layer with /bin/busybox + applet symlinks, /tmp (1777),
# /etc/passwd, /etc/group (root 0, app 1000), /root (0700), /home/app (owned
# 1000:1000). Config: Env PATH=/bin, Cmd ["uname","-m"], created at the epoch.
# The tar is made as root from a tree chowned to 0:0 (/home/app to 1000:1000),
# with --numeric-owner instead of --owner=0 --group=0 so /home/app keeps its
# owner; entries carry uid/gid only (no user/group names).
#
# Reproducible: fixed mtimes (@0), numeric owners, name-sorted tar entries, no
# pax atime/ctime or PID-bearing header names, `gzip -n`, JSON written with
# printf (compact, no trailing newline). Running it twice (after deleting
# OUTDIR/busybox*) yields byte-identical files, given the same cached .debs.
#
# Idempotent: if all three layouts exist and every blob reachable from their
# index.json files is present with the right sha256, exits 0 immediately.
# The layouts are built in a temporary directory and moved into place.
#
# Requirements: root on Debian 12; bash, coreutils, tar, gzip, dpkg-deb,
# sha256sum, stat (flock, from util-linux, is used if present).
# KEEP_WORK=1 keeps the temporary build directory (OUTDIR/.build.*) for debugging.

set -euo pipefail
export LC_ALL=C
umask 022

if [ $# -ne 1 ]; then
    echo "usage: $0 OUTDIR" >&2
    exit 2
fi
mkdir -p "$1"
OUT=$(cd "$1" && pwd)

ARCHES=(amd64 arm64)
APPLETS=(sh echo cat ls uname mkdir touch env id true false sleep wc head)

MT_INDEX=application/vnd.oci.image.index.v1+json
MT_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_CONFIG=application/vnd.oci.image.config.v1+json
MT_LAYER=application/vnd.oci.image.layer.v1.tar+gzip
REF_ANN='"annotations":{"org.opencontainers.image.ref.name":"latest"}'

log() { echo "make-fixtures: $*" >&2; }
die() { log "error: $*"; exit 1; }

# ---------------------------------------------------------------------------
# Completeness check (no jq): walk every descriptor ("digest":"sha256:<hex>",
# not the config's diff_ids) reachable from
# a layout's index.json; each blob must exist and hash to its name. Blobs that
# are JSON (start with '{') are scanned for further digests.
# ---------------------------------------------------------------------------
layout_complete() {
    local dir=$1
    [ -f "$dir/oci-layout" ] && [ -f "$dir/index.json" ] || return 1
    local -A seen=()
    local -a queue
    mapfile -t queue < <(grep -o '"digest":"sha256:[0-9a-f]\{64\}"' "$dir/index.json" | cut -d\" -f4 || true)
    [ ${#queue[@]} -gt 0 ] || return 1
    while [ ${#queue[@]} -gt 0 ]; do
        local d=${queue[0]}
        queue=("${queue[@]:1}")
        [ -z "${seen[$d]:-}" ] || continue
        seen[$d]=1
        local hex=${d#sha256:}
        local f=$dir/blobs/sha256/$hex
        [ -f "$f" ] || return 1
        [ "$(sha256sum < "$f" | cut -d' ' -f1)" = "$hex" ] || return 1
        if [ "$(head -c1 "$f")" = "{" ]; then
            local -a more
            mapfile -t more < <(grep -o '"digest":"sha256:[0-9a-f]\{64\}"' "$f" | cut -d\" -f4 || true)
            queue+=("${more[@]}")
        fi
    done
    return 0
}

all_complete() {
    local l
    for l in busybox busybox-amd64 busybox-arm64; do
        layout_complete "$OUT/$l" || return 1
    done
}

if all_complete; then
    exit 0
fi

[ "$(id -u)" = 0 ] || die "must run as root to build (chown of the rootfs, apt-get update)"

# Serialize concurrent invocations (e.g. parallel test binaries).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$OUT/.lock"
    flock 9
    if all_complete; then
        exit 0
    fi
fi

# ---------------------------------------------------------------------------
# .deb download (cached)
# ---------------------------------------------------------------------------
DEBS=$OUT/debs
mkdir -p "$DEBS"

deb_for() { # arch -> path of the cached deb, or empty
    local f
    for f in "$DEBS"/busybox-static_*_"$1".deb; do
        [ -f "$f" ] && { echo "$f"; return 0; }
    done
    return 0
}

apt_download() { # arch: download into a temp dir, then move into the cache
    local arch=$1 tmp
    tmp=$(mktemp -d "$DEBS/.dl.XXXXXX")
    # apt-get download as root writes as root: _apt cannot access the dir,
    # which is only a warning; let _apt write there anyway to keep it quiet.
    chmod 0777 "$tmp"
    if (cd "$tmp" && apt-get download -q "busybox-static:$arch") >&2; then
        mv "$tmp"/busybox-static_*_"$arch".deb "$DEBS"/
        rm -rf "$tmp"
        return 0
    fi
    rm -rf "$tmp"
    return 1
}

ensure_deb() {
    local arch=$1 native
    [ -n "$(deb_for "$arch")" ] && return 0
    native=$(dpkg --print-architecture)
    if [ "$arch" != "$native" ] &&
        ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        log "adding foreign architecture $arch"
        dpkg --add-architecture "$arch"
        apt-get update -q >&2
    fi
    if ! apt_download "$arch"; then
        log "download of busybox-static:$arch failed; running apt-get update and retrying"
        apt-get update -q >&2
        apt_download "$arch" || die "cannot download busybox-static:$arch"
    fi
    [ -n "$(deb_for "$arch")" ] || die "no busybox-static deb for $arch after download"
}

for arch in "${ARCHES[@]}"; do
    ensure_deb "$arch"
done

# ---------------------------------------------------------------------------
# Build
# ---------------------------------------------------------------------------
WORK=$(mktemp -d "$OUT/.build.XXXXXX")
trap '[ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

BLOBS=$WORK/blobs
mkdir -p "$BLOBS"

sha256_of() { sha256sum < "$1" | cut -d' ' -f1; }
size_of() { stat -c %s "$1"; }

# put_blob FILE: move FILE into the blob store; sets BLOB_DIGEST, BLOB_SIZE.
put_blob() {
    local hex
    hex=$(sha256_of "$1")
    BLOB_SIZE=$(size_of "$1")
    BLOB_DIGEST=sha256:$hex
    mv -f "$1" "$BLOBS/$hex"
    chmod 0644 "$BLOBS/$hex"
}

# put_json STRING: write STRING exactly (no newline) as a blob.
put_json() {
    printf '%s' "$1" > "$WORK/json.tmp"
    put_blob "$WORK/json.tmp"
}

declare -A MAN_DIGEST MAN_SIZE PLATFORM

for arch in "${ARCHES[@]}"; do
    deb=$(deb_for "$arch")
    log "building $arch rootfs from $(basename "$deb")"

    ex=$WORK/extract-$arch
    mkdir -p "$ex"
    dpkg-deb -x "$deb" "$ex"
    [ -f "$ex/bin/busybox" ] || die "$deb has no /bin/busybox"

    r=$WORK/rootfs-$arch
    mkdir -p "$r/bin" "$r/etc" "$r/home/app" "$r/root" "$r/tmp"
    cp "$ex/bin/busybox" "$r/bin/busybox"
    for a in "${APPLETS[@]}"; do
        ln -s busybox "$r/bin/$a"
    done
    printf '%s\n' \
        'root:x:0:0:root:/root:/bin/sh' \
        'app:x:1000:1000:app:/home/app:/bin/sh' > "$r/etc/passwd"
    printf '%s\n' \
        'root:x:0:' \
        'app:x:1000:' > "$r/etc/group"

    # Explicit modes and owners so the result does not depend on umask or on
    # what dpkg-deb extracted.
    chown -R 0:0 "$r"
    chown 1000:1000 "$r/home/app"
    chmod 0755 "$r" "$r/bin" "$r/etc" "$r/home" "$r/home/app"
    chmod 0755 "$r/bin/busybox"
    chmod 0644 "$r/etc/passwd" "$r/etc/group"
    chmod 0700 "$r/root"
    chmod 1777 "$r/tmp"

    # Layer. Owners come from the tree (all root except /home/app), recorded
    # numerically; no --owner=0 so that /home/app stays 1000:1000.
    tar -C "$r" --sort=name --mtime=@0 --numeric-owner \
        --format=posix \
        --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
        -cf "$WORK/layer.tar" bin etc home root tmp
    diff_id=sha256:$(sha256_of "$WORK/layer.tar")
    gzip -n -9 -c "$WORK/layer.tar" > "$WORK/layer.tar.gz"
    rm -f "$WORK/layer.tar"
    put_blob "$WORK/layer.tar.gz"
    layer_digest=$BLOB_DIGEST
    layer_size=$BLOB_SIZE

    if [ "$arch" = arm64 ]; then
        plat='"architecture":"arm64","os":"linux","variant":"v8"'
    else
        plat="\"architecture\":\"$arch\",\"os\":\"linux\""
    fi
    PLATFORM[$arch]=$plat

    put_json "{\"created\":\"1970-01-01T00:00:00Z\",$plat,\"config\":{\"Env\":[\"PATH=/bin\"],\"Cmd\":[\"uname\",\"-m\"]},\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"$diff_id\"]},\"history\":[{\"created\":\"1970-01-01T00:00:00Z\",\"created_by\":\"scripts/make-fixtures.sh\"}]}"
    config_digest=$BLOB_DIGEST
    config_size=$BLOB_SIZE

    put_json "{\"schemaVersion\":2,\"mediaType\":\"$MT_MANIFEST\",\"config\":{\"mediaType\":\"$MT_CONFIG\",\"digest\":\"$config_digest\",\"size\":$config_size},\"layers\":[{\"mediaType\":\"$MT_LAYER\",\"digest\":\"$layer_digest\",\"size\":$layer_size}]}"
    MAN_DIGEST[$arch]=$BLOB_DIGEST
    MAN_SIZE[$arch]=$BLOB_SIZE

    # Single-arch layout: copies of this arch's blobs.
    s=$WORK/out/busybox-$arch
    mkdir -p "$s/blobs/sha256"
    for d in "$layer_digest" "$config_digest" "${MAN_DIGEST[$arch]}"; do
        cp "$BLOBS/${d#sha256:}" "$s/blobs/sha256/"
    done
    printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$s/oci-layout"
    printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"$MT_INDEX\",\"manifests\":[{\"mediaType\":\"$MT_MANIFEST\",\"digest\":\"${MAN_DIGEST[$arch]}\",\"size\":${MAN_SIZE[$arch]},$REF_ANN,\"platform\":{$plat}}]}" > "$s/index.json"
done

# Image index (a blob) listing both manifests.
entries=()
for arch in "${ARCHES[@]}"; do
    entries+=("{\"mediaType\":\"$MT_MANIFEST\",\"digest\":\"${MAN_DIGEST[$arch]}\",\"size\":${MAN_SIZE[$arch]},\"platform\":{${PLATFORM[$arch]}}}")
done
put_json "{\"schemaVersion\":2,\"mediaType\":\"$MT_INDEX\",\"manifests\":[$(IFS=,; echo "${entries[*]}")]}"
index_digest=$BLOB_DIGEST
index_size=$BLOB_SIZE

m=$WORK/out/busybox
mkdir -p "$m/blobs/sha256"
cp "$BLOBS"/* "$m/blobs/sha256/"
printf '%s' '{"imageLayoutVersion":"1.0.0"}' > "$m/oci-layout"
printf '%s' "{\"schemaVersion\":2,\"mediaType\":\"$MT_INDEX\",\"manifests\":[{\"mediaType\":\"$MT_INDEX\",\"digest\":\"$index_digest\",\"size\":$index_size,$REF_ANN}]}" > "$m/index.json"

# Move into place; replace only layouts that are missing or incomplete.
for l in busybox busybox-amd64 busybox-arm64; do
    layout_complete "$WORK/out/$l" || die "internal error: built $l is incomplete"
    if ! layout_complete "$OUT/$l"; then
        rm -rf "$OUT/$l"
        mv "$WORK/out/$l" "$OUT/$l"
    fi
done

log "image index $index_digest"
for arch in "${ARCHES[@]}"; do
    log "  linux/$arch manifest ${MAN_DIGEST[$arch]}"
done
