#!/usr/bin/env bash
# The seeds' ECR workflow with the real AWS CLI v2 (Debian's awscli 2.9, which predates
# AWS_ENDPOINT_URL_ECR, hence --endpoint-url) and skopeo against a running `berth serve`.
#
# Usage: scripts/ecr-cli-test.sh HOST:PORT FIXTURES_DIR
# Environment: AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY of an administrator; AWS (the CLI,
# default /usr/bin/aws). Run by crates/berth/tests/ecr_cli.rs.
set -euo pipefail

host=$1
fixtures=$2
aws_cli=${AWS:-/usr/bin/aws}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

export AWS_DEFAULT_REGION=us-east-1 AWS_PAGER="" AWS_CONFIG_FILE="$work/none" \
    AWS_SHARED_CREDENTIALS_FILE="$work/none"
ecr() { "$aws_cli" --endpoint-url "http://$host" --output json ecr "$@"; }
json() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }
fail() { echo "ecr-cli-test: $*" >&2; exit 1; }

repo=cli/app
ecr create-repository --repository-name "$repo" \
    --image-scanning-configuration scanOnPush=true >"$work/create.json"
uri=$(json 'd["repository"]["repositoryUri"]' <"$work/create.json")
[ "$uri" = "$host/$repo" ] || fail "repositoryUri is $uri, expected $host/$repo"

ecr describe-repositories --repository-names "$repo" >"$work/describe.json"
[ "$(json 'd["repositories"][0]["imageScanningConfiguration"]["scanOnPush"]' <"$work/describe.json")" = True ] \
    || fail "describe-repositories lost scanOnPush"

# get-login-password | skopeo login --password-stdin, then a push.
auth="$work/auth.json"
ecr get-login-password | skopeo login --tls-verify=false --authfile "$auth" \
    --username AWS --password-stdin "$host"
skopeo copy --quiet --authfile "$auth" --dest-tls-verify=false \
    "oci:$fixtures/busybox-amd64:latest" "docker://$host/$repo:v1"
pushed=$(skopeo inspect --raw --authfile "$auth" --tls-verify=false "docker://$host/$repo:v1" \
    | sha256sum | cut -d' ' -f1)

ecr describe-images --repository-name "$repo" >"$work/images.json"
[ "$(json 'd["imageDetails"][0]["imageDigest"]' <"$work/images.json")" = "sha256:$pushed" ] \
    || fail "describe-images does not show the pushed digest sha256:$pushed"
[ "$(json '",".join(d["imageDetails"][0]["imageTags"])' <"$work/images.json")" = v1 ] \
    || fail "describe-images does not show tag v1"

# IMMUTABLE: overwriting v1 with another image is refused; the tag keeps its digest.
ecr put-image-tag-mutability --repository-name "$repo" --image-tag-mutability IMMUTABLE >/dev/null
if skopeo copy --quiet --authfile "$auth" --dest-tls-verify=false \
    "oci:$fixtures/busybox-arm64:latest" "docker://$host/$repo:v1" 2>"$work/refused.txt"; then
    fail "overwriting an immutable tag succeeded"
fi
grep -q "immutable" "$work/refused.txt" || fail "refusal does not say why: $(cat "$work/refused.txt")"
ecr describe-images --repository-name "$repo" --image-ids imageTag=v1 >"$work/after.json"
[ "$(json 'd["imageDetails"][0]["imageDigest"]' <"$work/after.json")" = "sha256:$pushed" ] \
    || fail "the immutable tag moved"

ecr delete-repository --repository-name "$repo" --force >/dev/null
if ecr describe-repositories --repository-names "$repo" 2>"$work/gone.txt"; then
    fail "the repository survived delete-repository --force"
fi
grep -q RepositoryNotFoundException "$work/gone.txt" || fail "$(cat "$work/gone.txt")"
echo "ecr-cli-test: ok"
