#!/usr/bin/env bash
# The scanner's fixtures that only real tools make (idempotent: kept when present):
#   OUTDIR/go-app          a Go binary built by Debian's Go (golang-go) from a module that
#                          requires golang.org/x/text v0.3.7, vendored so nothing is downloaded:
#                          the build info the linker embeds is real, whatever the vendored code is
#   OUTDIR/log4j-core.jar  Debian's log4j-core jar (liblog4j2-java 2.19.0): real Maven metadata
#   OUTDIR/bookworm/       a Debian 12 root filesystem by `debootstrap --variant=minbase` from
#                          Debian's mirror (base.tar.gz), then e2fsprogs purged by the real dpkg
#                          in it: the status it leaves (status-after-purge)
#   OUTDIR/python/         requests 2.19.0 and urllib3 1.23 from PyPI, as `pip --target` lays
#                          them out
#   OUTDIR/node_modules/   lodash 4.17.15 and ms 2.0.0: the packages as the npm registry serves
#                          them (their tarballs, unpacked where npm installs them)
# Each is made in a temporary place and renamed into OUTDIR whole, so an interrupted run never
# leaves a part that passes for done. debootstrap and chroot need root (or sudo without a
# password).
# Usage: scripts/make-scan-fixtures.sh OUTDIR
set -euo pipefail
out=${1:?usage: make-scan-fixtures.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "make-scan-fixtures: $*" >&2; }

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
# Debian's Go, whatever else is first on PATH: the tests expect its version.
GO=/usr/bin/go; [ -x "$GO" ] || GO=go

work=$(mktemp -d)
# The debootstrapped tree is root's: removed with the same rights it was made with.
trap '[ ! -e "$work/root" ] || $SUDO rm -rf "$work/root"; rm -rf "$work"' EXIT

if [ ! -s "$out/go-app" ]; then
  log "building go-app with $($GO version)"
  src="$work/go-app"
  mkdir -p "$src/vendor/golang.org/x/text/language"
  cat > "$src/go.mod" <<'MOD'
module example.com/berth-scan-fixture

go 1.19

require golang.org/x/text v0.3.7
MOD
  cat > "$src/vendor/modules.txt" <<'TXT'
# golang.org/x/text v0.3.7
## explicit; go 1.17
golang.org/x/text/language
TXT
  cat > "$src/vendor/golang.org/x/text/language/language.go" <<'GO'
// Package language stands in for golang.org/x/text/language in this offline fixture.
package language

// Parse returns its argument.
func Parse(s string) string { return s }
GO
  cat > "$src/main.go" <<'GO'
package main

import (
	"fmt"

	"golang.org/x/text/language"
)

func main() { fmt.Println(language.Parse("en")) }
GO
  (cd "$src" && env GOFLAGS=-mod=vendor GOPROXY=off GOCACHE="$work/cache" GOPATH="$work/gopath" \
    CGO_ENABLED=0 "$GO" build -trimpath -o "$out/go-app.tmp" .)
  mv "$out/go-app.tmp" "$out/go-app"
fi

if [ ! -s "$out/log4j-core.jar" ]; then
  log "extracting log4j-core.jar from Debian's liblog4j2-java"
  apt-cache show liblog4j2-java >/dev/null 2>&1 || $SUDO apt-get update -q >&2
  # apt-get download as root hands the download to the _apt user: a directory it may write.
  dl=$(mktemp -d "$work/dl.XXXXXX")
  chmod 0777 "$dl"
  (cd "$dl" && apt-get download -q liblog4j2-java) >&2
  dpkg-deb --fsys-tarfile "$dl"/liblog4j2-java_*.deb | tar -x -C "$dl" ./usr/share/java/log4j-core.jar
  cp "$dl/usr/share/java/log4j-core.jar" "$out/log4j-core.jar.tmp"
  mv "$out/log4j-core.jar.tmp" "$out/log4j-core.jar"
fi

if [ ! -s "$out/bookworm/status-after-purge" ]; then
  mirror=${BERTH_DEBIAN_MIRROR:-http://deb.debian.org/debian}
  log "debootstrap --variant=minbase bookworm from $mirror"
  root="$work/root"
  $SUDO debootstrap --variant=minbase bookworm "$root" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log" >&2; exit 1; }
  $SUDO rm -f "$root"/var/cache/apt/archives/*.deb
  mkdir -p "$out/bookworm"
  $SUDO tar -C "$root" --numeric-owner --sort=name --mtime=@1700000000 -cz . >"$out/bookworm/base.tar.gz.tmp"
  mv "$out/bookworm/base.tar.gz.tmp" "$out/bookworm/base.tar.gz"
  $SUDO chroot "$root" dpkg --purge e2fsprogs >&2
  cp "$root/var/lib/dpkg/status" "$out/bookworm/status-after-purge.tmp"
  mv "$out/bookworm/status-after-purge.tmp" "$out/bookworm/status-after-purge"
  $SUDO rm -rf "$root"
fi

if [ ! -d "$out/python/requests-2.19.0.dist-info" ]; then
  log "pip install --target: requests 2.19.0, urllib3 1.23 (PyPI)"
  python3 -m venv "$work/venv"
  "$work/venv/bin/pip" install -q --no-deps --no-compile --target "$work/python" "requests==2.19.0" "urllib3==1.23"
  rm -rf "$out/python" "$out/python.tmp"
  cp -r "$work/python" "$out/python.tmp"
  mv "$out/python.tmp" "$out/python"
fi

if [ ! -s "$out/node_modules/ms/package.json" ]; then
  log "npm packages: lodash 4.17.15, ms 2.0.0 (registry.npmjs.org tarballs)"
  mkdir -p "$work/node_modules"
  for p in lodash/-/lodash-4.17.15 ms/-/ms-2.0.0; do
    name=${p%%/*}
    curl -fsSL "https://registry.npmjs.org/$p.tgz" -o "$work/$name.tgz"
    mkdir -p "$work/node_modules/$name"
    tar -xzf "$work/$name.tgz" -C "$work/node_modules/$name" --strip-components=1
  done
  rm -rf "$out/node_modules" "$out/node_modules.tmp"
  cp -r "$work/node_modules" "$out/node_modules.tmp"
  mv "$out/node_modules.tmp" "$out/node_modules"
fi
