#!/usr/bin/env bash
# Runs every fuzz target (fuzz/fuzz_targets/*.rs) for a bounded time, sharing it between them,
# and prints each target's executions and coverage.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET…]   (default 240 s over all targets)
#
# cargo-fuzz needs nightly-only compiler flags (-Z sanitizer); this machine has only the stable
# toolchain, so RUSTC_BOOTSTRAP=1 lets stable rustc accept them. Seed corpora come from the
# project's tests; crashes land in fuzz/artifacts/<target>/ and fail the run.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-240}"
shift || true
all=(dockerfile oci_names manifest iam_policy sigv4_header registry_token registry_http client_auth layer_tar scan_layer)
[ "$#" -gt 0 ] && targets=("$@") || targets=("${all[@]}")
per=$(( seconds / ${#targets[@]} ))
(( per >= 5 )) || per=5

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz"
  cargo install --locked cargo-fuzz --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1

# ---- seed corpora ------------------------------------------------------------------------------
seed() { # seed TARGET NAME BYTES…  (printf format)
  mkdir -p "fuzz/corpus/$1"
  printf "${@:3}" > "fuzz/corpus/$1/$2"
}
mkdir -p fuzz/corpus/dockerfile
cp crates/berth-dockerfile/tests/corpus/*.Dockerfile fuzz/corpus/dockerfile/
for s in busybox docker.io/library/busybox:1.36 localhost:5000/a/b:v1@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef \
         123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/app:latest sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855 \
         v1.2.3 team/app; do
  seed oci_names "$(printf %s "$s" | md5sum | cut -c1-12)" '%s' "$s"
done
seed manifest image '\001{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0}],"subject":{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":2},"annotations":{"a":"b"}}'
seed manifest index '\002{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":2,"platform":{"architecture":"arm64","os":"linux","variant":"v8"}}]}'
seed iam_policy allow '{"Version":"2012-10-17","Statement":[{"Sid":"A","Effect":"Allow","Principal":{"AWS":["arn:aws:iam::123456789012:user/alice","123456789012"]},"Action":["ecr:Batch*","ecr:GetDownloadUrlForLayer"],"Resource":"arn:aws:ecr:*:*:repository/${aws:username}/*","Condition":{"IpAddress":{"aws:SourceIp":"10.0.0.0/8"},"DateLessThan":{"aws:CurrentTime":"2030-01-01T00:00:00Z"},"ForAnyValue:StringLike":{"aws:TagKeys":["te*"]},"StringEqualsIfExists":{"aws:ResourceTag/team":"core"}}}]}'
seed iam_policy deny '{"Version":"2012-10-17","Statement":{"Effect":"Deny","NotPrincipal":{"AWS":"arn:aws:iam::123456789012:user/bob"},"NotAction":"ecr:Describe*","NotResource":"*","Condition":{"Bool":{"aws:SecureTransport":"false"},"NumericGreaterThan":{"aws:EpochTime":"5"}}}}'
seed sigv4_header ok 'AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261203/us-east-1/ecr/aws4_request, SignedHeaders=host;x-amz-date;x-amz-target, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7\n20261203T120000Z\nAmazonEC2ContainerRegistry_V20150921.DescribeRepositories\n{}'
seed registry_token claims 'AKIAIOSFODNN7EXAMPLE|download:team/app@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'
seed registry_token token 'b1.eyJrIjoiQUtJQSJ9.AAAA'
seed registry_http create '\001{"repositoryName":"team/app","imageTagMutability":"IMMUTABLE","tags":[{"Key":"a","Value":"b"}]}'
seed registry_http layer '\013{"repositoryName":"team/app","uploadId":"00000000-0000-0000-0000-000000000000","partFirstByte":0,"partLastByte":1,"layerPartBlob":"AAA="}'
seed registry_http put '\010{"repositoryName":"team/app","imageManifest":"{}","imageTag":"v1"}'
seed registry_http upload '\203team/app/blobs/uploads/?digest=sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n'
seed registry_http manifest '\202team/app/manifests/v1\n{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855","size":0},"layers":[]}'
seed registry_http tags '\200team/app/tags/list?n=2&last=a\n'
seed registry_http referrers '\200team/app/referrers/sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855?artifactType=x\n'
seed client_auth bearer '\000Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull",error="insufficient_scope", Basic realm="x"'
seed client_auth config '\001{"auths":{"https://index.docker.io/v1/":{"auth":"dXNlcjpwYXNz"},"127.0.0.1:5000":{"username":"u","password":"p","identitytoken":"t"}},"credHelpers":{"ghcr.io":"x"},"credsStore":"y"}'
# A small layer with a directory, a file, a symlink, a hard link and both kinds of whiteout.
layer_seed=$(mktemp -d)
mkdir -p "$layer_seed/root/etc/opq" "$layer_seed/root/bin"
echo hi > "$layer_seed/root/etc/motd"
ln -s ../etc/motd "$layer_seed/root/bin/motd"
ln "$layer_seed/root/etc/motd" "$layer_seed/root/etc/motd.hard"
: > "$layer_seed/root/etc/.wh.gone"
: > "$layer_seed/root/etc/opq/.wh..wh..opq"
mkdir -p fuzz/corpus/layer_tar
tar -C "$layer_seed/root" --sort=name --owner=0 --group=0 --mtime=@0 -cf fuzz/corpus/layer_tar/plain.tar .
gzip -9nc fuzz/corpus/layer_tar/plain.tar > fuzz/corpus/layer_tar/layer.tar.gz
rm -rf "$layer_seed"

# The scanner's layers: package databases and metadata files as images hold them.
scan_seed=$(mktemp -d)
mkdir -p "$scan_seed/etc" "$scan_seed/var/lib/dpkg" "$scan_seed/lib/apk/db" \
  "$scan_seed/usr/lib/python3/dist-packages/requests-2.19.0.dist-info" \
  "$scan_seed/app/node_modules/lodash" "$scan_seed/usr/lib/python3/dist-packages/gone"
printf 'ID=debian\nVERSION_ID="12"\n' > "$scan_seed/etc/os-release"
printf 'Package: libssl3\nStatus: install ok installed\nSource: openssl (3.0.11-1)\nVersion: 3.0.11-1~deb12u2\n\n' \
  > "$scan_seed/var/lib/dpkg/status"
printf 'P:musl\nV:1.2.4-r2\no:musl\n\n' > "$scan_seed/lib/apk/db/installed"
printf 'Metadata-Version: 2.1\nName: requests\nVersion: 2.19.0\n\n' \
  > "$scan_seed/usr/lib/python3/dist-packages/requests-2.19.0.dist-info/METADATA"
printf '{"name":"lodash","version":"4.17.15"}' > "$scan_seed/app/node_modules/lodash/package.json"
: > "$scan_seed/usr/lib/python3/dist-packages/gone/.wh..wh..opq"
mkdir -p fuzz/corpus/scan_layer
tar -C "$scan_seed" --sort=name --owner=0 --group=0 --mtime=@0 -cf fuzz/corpus/scan_layer/plain.tar .
gzip -9nc fuzz/corpus/scan_layer/plain.tar > fuzz/corpus/scan_layer/layer.tar.gz
rm -rf "$scan_seed"

# ---- one build, then each target its share of the time -----------------------------------------
echo "==> building the fuzz targets: ${targets[*]}"
cargo fuzz build --fuzz-dir fuzz
summary=()
for t in "${targets[@]}"; do
  echo "==> fuzzing $t for ${per}s"
  log=$(mktemp)
  if ! cargo fuzz run --fuzz-dir fuzz "$t" "fuzz/corpus/$t" -- \
      -max_total_time="$per" -max_len=8192 -rss_limit_mb=4096 -timeout=10 -print_final_stats=1 \
      >"$log" 2>&1; then
    grep -A4 -m3 -E "panicked at|ERROR: AddressSanitizer|ERROR: libFuzzer" "$log" || true
    tail -25 "$log"
    echo "fuzz target $t failed; the input is in fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*')
  summary+=("$(printf '%-16s %10s runs  cov %6s  ft %7s' "$t" "${runs:-?}" "${cov:-?}" "${ft:-?}")")
  rm -f "$log"
done
echo "==> fuzz summary (${per}s each)"
printf '%s\n' "${summary[@]}"
