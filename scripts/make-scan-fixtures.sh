#!/usr/bin/env bash
# The scanner's fixtures that only real tools make (idempotent: kept when present):
#   OUTDIR/go-app          a Go binary built by Debian's Go (golang-go) from a module that
#                          requires golang.org/x/text v0.3.7, vendored so nothing is downloaded:
#                          the build info the linker embeds is real, whatever the vendored code is
#   OUTDIR/log4j-core.jar  Debian's log4j-core jar (liblog4j2-java 2.19.0): real Maven metadata
# Usage: scripts/make-scan-fixtures.sh OUTDIR
set -euo pipefail
out=${1:?usage: make-scan-fixtures.sh OUTDIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
log() { echo "make-scan-fixtures: $*" >&2; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if [ ! -s "$out/go-app" ]; then
  log "building go-app with $(go version)"
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
    CGO_ENABLED=0 go build -trimpath -o "$out/go-app.tmp" .)
  mv "$out/go-app.tmp" "$out/go-app"
fi

if [ ! -s "$out/log4j-core.jar" ]; then
  log "extracting log4j-core.jar from Debian's liblog4j2-java"
  chmod 0777 "$work"
  (cd "$work" && apt-get download -q liblog4j2-java) >&2
  dpkg-deb --fsys-tarfile "$work"/liblog4j2-java_*.deb | tar -x -C "$work" ./usr/share/java/log4j-core.jar
  mv "$work/usr/share/java/log4j-core.jar" "$out/log4j-core.jar"
fi
