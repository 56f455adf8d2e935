#!/usr/bin/env bash
# image-context.sh OUT ARCH=BINARY [ARCH=BINARY…]
#
# Makes the build context of berth's own container image (the Dockerfile at the repository's
# root): for each architecture (amd64, arm64), OUT/rootfs-ARCH/ holds the berth binary as
# /usr/bin/berth, the C runtime it links (libc6, libgcc-s1, zlib1g of that architecture: for the
# host's own architecture the files of the packages installed here, so nothing is downloaded;
# for another one Debian's packages, fetched with `apt-get download` and cached in OUT/debs), the CA
# certificates, /etc/passwd and /etc/group with the `berth` user (65532) and /tmp; OUT/data is
# the empty /data. Nothing else: the image has no shell.
#
#   scripts/image-context.sh target/image-context amd64=target/dist/berth \
#       arm64=target/aarch64-unknown-linux-gnu/dist/berth
#   berth build --platform linux/amd64,linux/arm64 -f Dockerfile -t REF --push target/image-context
#
# Needs: Debian (apt-get, dpkg-deb), root for `dpkg --add-architecture` on first use of a
# foreign architecture.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT ARCH=BINARY..." >&2; exit 2; }
out=$1; shift
mkdir -p "$out/debs" "$out/data"
out=$(cd "$out" && pwd)
native=$(dpkg --print-architecture)
packages=(libc6 libgcc-s1 zlib1g)

fetch() { # arch package -> path of the deb of the version apt would install now (cached)
    local arch=$1 pkg=$2 version file tmp
    if [ "$arch" != "$native" ] && ! dpkg --print-foreign-architectures | grep -qx "$arch"; then
        dpkg --add-architecture "$arch"
        apt-get update -q >&2
    fi
    version=$(apt-cache show --no-all-versions "$pkg:$arch" 2>/dev/null | sed -n 's/^Version: //p' | head -1)
    if [ -z "$version" ]; then
        apt-get update -q >&2
        version=$(apt-cache show --no-all-versions "$pkg:$arch" | sed -n 's/^Version: //p' | head -1)
    fi
    [ -n "$version" ] || { echo "image-context: apt knows no $pkg:$arch" >&2; return 1; }
    # Deb file names spell an epoch's colon as %3a.
    file="$out/debs/${pkg}_${version//:/%3a}_$arch.deb"
    if [ ! -f "$file" ]; then
        tmp=$(mktemp -d "$out/debs/.dl.XXXXXX")
        chmod 0777 "$tmp"
        (cd "$tmp" && apt-get download -q "$pkg:$arch=$version") >&2 || { rm -rf "$tmp"; return 1; }
        mv "$tmp"/*.deb "$file"
        rm -rf "$tmp"
    fi
    echo "$file"
}

installed() { # package -> true when the host's own architecture has it installed
    dpkg-query -W -f='${Status}' "$1:$native" 2>/dev/null | grep -q "install ok installed"
}

copy_installed() { # package root: the package's files as dpkg installed them on this host
    local pkg=$1 root=$2 path
    while IFS= read -r path; do
        # Files and links to files; directories (and the merged-/usr links to them, /lib → usr/lib
        # on the host) are made as real directories by mkdir, as dpkg-deb -x makes them.
        if [ ! -d "$path" ] && { [ -L "$path" ] || [ -f "$path" ]; }; then
            mkdir -p "$root$(dirname "$path")"
            cp -a "$path" "$root$path"
        fi
    done < <(dpkg-query -L "$pkg:$native")
}

for spec in "$@"; do
    arch=${spec%%=*}
    bin=${spec#*=}
    case $arch in amd64|arm64) ;; *) echo "image-context: unsupported architecture $arch" >&2; exit 2;; esac
    [ -x "$bin" ] || { echo "image-context: $bin is not an executable" >&2; exit 2; }
    root="$out/rootfs-$arch"
    rm -rf "$root"
    mkdir -p "$root/usr/bin" "$root/etc/ssl/certs" "$root/tmp"
    for pkg in "${packages[@]}"; do
        if [ "$arch" = "$native" ] && installed "$pkg"; then
            copy_installed "$pkg" "$root"
        else
            deb=$(fetch "$arch" "$pkg") || { echo "image-context: cannot fetch $pkg:$arch" >&2; exit 1; }
            dpkg-deb -x "$deb" "$root"
        fi
    done
    # Only the shared libraries and the loader: no documentation, locales or gconv modules.
    rm -rf "$root/usr/share" "$root/usr/lib/"*/gconv "$root/usr/libexec" "$root/sbin" "$root/usr/bin/"* "$root/usr/sbin" "$root/etc/ld.so.conf.d"
    install -m 0755 "$bin" "$root/usr/bin/berth"
    # The debug binary of the tests carries debug info; the image needs none.
    if command -v objcopy >/dev/null && [ "$arch" = "$native" ]; then
        objcopy --strip-debug "$root/usr/bin/berth"
    fi
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
    printf 'root:x:0:0:root:/root:/sbin/nologin\nberth:x:65532:65532:berth:/data:/sbin/nologin\n' > "$root/etc/passwd"
    printf 'root:x:0:\nberth:x:65532:\n' > "$root/etc/group"
    chmod 1777 "$root/tmp"
    echo "image-context: $root ($(du -sh "$root" | cut -f1))"
done
