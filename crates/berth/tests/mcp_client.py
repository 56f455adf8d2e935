"""The MCP test client (python `mcp` 2.x, the reference SDK): drives `berth mcp` over stdio or
streamable HTTP against a local `berth serve`. Usage:

    mcp_client.py stdio BERTH REGISTRY CONTEXT BAD_CONTEXT
    mcp_client.py http URL REGISTRY CONTEXT BAD_CONTEXT
    mcp_client.py readonly BERTH REGISTRY CONTEXT BAD_CONTEXT
    mcp_client.py served URL REGISTRY CONTEXT BAD_CONTEXT
    mcp_client.py served-ro URL REGISTRY CONTEXT BAD_CONTEXT

`served` and `served-ro` reach the endpoint `berth serve --mcp` mounts at /mcp, behind the
registry's authentication: the Authorization value of a caller allowed berth:InvokeMcp is in
MCP_AUTH, one of a caller who is not in MCP_DENIED_AUTH.

Exits non-zero with the failing check on standard error."""

import asyncio
import base64
import json
import os
import sys

import httpx2

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

FINCH = {"finch_build_container_image", "finch_push_image", "finch_create_ecr_repo"}
OWN = {"build", "push", "copy", "inspect", "ensure_repository", "list_images",
       "describe_image", "lint", "release", "lifecycle_preview", "scan"}
WRITES = {"finch_build_container_image", "finch_push_image", "finch_create_ecr_repo",
          "build", "push", "copy", "ensure_repository", "release"}


def check(cond, what):
    if not cond:
        raise SystemExit(f"check failed: {what}")


def error_of(res, kind=None):
    check(res.is_error, f"expected isError, got {res.structured_content}")
    err = (res.structured_content or {}).get("error") or {}
    check(err.get("kind") and err.get("message"), f"structured error: {res.structured_content}")
    if kind:
        check(err["kind"] == kind, f"error kind {err['kind']} != {kind}: {err}")
    return err


async def tools_are_described(s):
    tools = {t.name: t for t in (await s.list_tools()).tools}
    check(FINCH | OWN <= set(tools), f"tools: {sorted(tools)}")
    for name, t in tools.items():
        check(t.output_schema is not None, f"{name} has an outputSchema")
        a = t.annotations
        check(a is not None and a.read_only_hint is not None and a.destructive_hint is not None
              and a.idempotent_hint is not None and a.open_world_hint is not None,
              f"{name} has every annotation")
        check(a.read_only_hint == (name not in WRITES), f"{name} readOnlyHint")
    # Finch's parameters, unchanged.
    build = tools["finch_build_container_image"].input_schema["properties"]
    for p in ["dockerfile_path", "context_path", "tags", "platforms", "target", "no_cache",
              "pull", "build_contexts", "outputs", "cache_from", "quiet", "progress"]:
        check(p in build, f"finch_build_container_image takes {p}")
    check(set(tools["finch_build_container_image"].input_schema.get("required", [])) ==
          {"dockerfile_path", "context_path"}, "finch build's required parameters")
    check("image" in tools["finch_push_image"].input_schema["properties"], "finch push image")
    repo = tools["finch_create_ecr_repo"].input_schema["properties"]
    check("repository_name" in repo and "region" in repo, "finch create repo parameters")
    return tools


async def full(s, registry, ctx, bad):
    await tools_are_described(s)
    repo = "mcp/app"
    res = await s.call_tool("finch_create_ecr_repo", {"repository_name": repo, "region": None})
    check(not res.is_error, f"create repo: {res.structured_content}")
    uri = res.structured_content["repository_uri"]
    check(uri.endswith("/" + repo), uri)
    check(res.structured_content["outcome"]["repository"]["imageTagMutability"] == "IMMUTABLE",
          "Finch's repositories are tag-immutable")
    # Again: it exists, nothing changes.
    res = await s.call_tool("finch_create_ecr_repo", {"repository_name": repo})
    check(not res.is_error and res.structured_content["outcome"]["created"] is False, "idempotent")

    ref = f"{registry}/{repo}:v1"
    progress = []

    async def on_progress(done, total, message):
        progress.append(message)

    # Every argument the seed's guide uses.
    res = await s.call_tool("finch_build_container_image", {
        "dockerfile_path": f"{ctx}/Dockerfile", "context_path": ctx, "tags": [ref],
        "platforms": ["linux/amd64", "linux/arm64"], "target": "final", "no_cache": True,
        "pull": False, "build_contexts": [f"extra={ctx}/extra"], "cache_from": [],
        "quiet": False, "progress": "plain", "outputs": None,
    }, progress_callback=on_progress)
    check(not res.is_error, f"build: {res.structured_content}")
    build = res.structured_content["build"]
    check(sorted(i["platform"] for i in build["images"]) == ["linux/amd64", "linux/arm64"],
          f"two platforms: {build['images']}")
    check(any("COPY" in (m or "") for m in progress), f"build progress: {progress}")

    progress.clear()
    res = await s.call_tool("finch_push_image", {"image": ref}, progress_callback=on_progress)
    check(not res.is_error, f"push: {res.structured_content}")
    out = res.structured_content
    digest = build["digest"]
    short = digest.split(":")[1][:12]
    check(out["references"][0] == ref, f"the tag asked for is pushed: {out['references']}")
    check(any(r.endswith(":" + short) for r in out["references"]), f"digest tag: {out['references']}")
    check(out["image_uri"] == f"{registry}/{repo}@{digest}", out["image_uri"])
    check(len(out["copy"]["images"]) == 2, "every platform pushed")
    check(any("pushed" in (m or "") for m in progress), f"push progress: {progress}")

    # Through the ECR API: the index under both tags, each platform by digest.
    res = await s.call_tool("describe_image", {"repository": repo, "image_ids": ["v1"]})
    check(not res.is_error, f"describe: {res.structured_content}")
    img = res.structured_content["images"][0]
    check(img["imageDigest"] == digest, f"{img['imageDigest']} != {digest}")
    check(sorted(img["imageTags"]) == sorted(["v1", short]), f"tags: {img['imageTags']}")
    res = await s.call_tool("describe_image", {
        "repository": repo, "image_ids": [i["digest"] for i in build["images"]]})
    check(len(res.structured_content["images"]) == 2, "each platform is described")
    res = await s.call_tool("inspect", {"image": ref})
    check(not res.is_error and len(res.structured_content["manifests"]) == 2, "inspect index")

    # The scanner reads every platform (nothing to find in FROM scratch files; the empty
    # database is noted).
    res = await s.call_tool("scan", {"image": ref, "severities": ["HIGH", "CRITICAL"]})
    check(not res.is_error, f"scan: {res.structured_content}")
    reports = res.structured_content["reports"]
    check(sorted(r["platform"] for r in reports) == ["linux/amd64", "linux/arm64"],
          f"every platform scanned: {reports}")
    check(all(r["findings"] == [] for r in reports), f"no findings: {reports}")
    res = await s.call_tool("scan", {"image": ref, "severities": ["SEVERE"]})
    error_of(res, "invalid_input")

    # A second, older-looking image: the first stage only, one platform. A policy keeping one
    # image would expire the index pushed first, and never its platform manifests on their own.
    res = await s.call_tool("finch_build_container_image", {
        "dockerfile_path": f"{ctx}/Dockerfile", "context_path": ctx,
        "tags": [f"{registry}/{repo}:v0"], "platforms": ["linux/amd64"], "target": "base"})
    check(not res.is_error, f"second build: {res.structured_content}")
    res = await s.call_tool("finch_push_image", {"image": f"{registry}/{repo}:v0"})
    check(not res.is_error, f"second push: {res.structured_content}")
    keep_one = {"rules": [{"rulePriority": 1, "description": "keep one",
                           "selection": {"tagStatus": "any", "countType": "imageCountMoreThan",
                                         "countNumber": 1},
                           "action": {"type": "expire"}}]}
    res = await s.call_tool("lifecycle_preview", {"repository": repo, "policy": keep_one})
    check(not res.is_error, f"lifecycle preview: {res.structured_content}")
    p = res.structured_content
    check(p["status"] == "COMPLETE", f"preview status: {p}")
    platforms = {i["digest"] for i in build["images"]}
    check({r["imageDigest"] for r in p["previewResults"]} == {digest} | platforms,
          f"only the older index expires, its platform manifests with it: {p}")
    check(all(r["appliedRulePriority"] == 1 for r in p["previewResults"]), f"the rule: {p}")
    check(p["expiringImageTotalCount"] == 3, f"the summary: {p}")
    res = await s.call_tool("list_images", {"repository": repo})
    check(any(i["imageDigest"] == digest for i in res.structured_content["images"]),
          "a preview expires nothing")
    res = await s.call_tool("lifecycle_preview", {"repository": repo})
    error_of(res, "not_found")

    # Failures carry structure.
    res = await s.call_tool("finch_build_container_image", {
        "dockerfile_path": f"{bad}/Dockerfile", "context_path": bad})
    e = error_of(res, "dockerfile")
    check("line" in e["message"], e)
    res = await s.call_tool("build", {"context_path": f"{ctx}/no-such-dir"})
    error_of(res, "invalid_input")
    res = await s.call_tool("lint", {"dockerfile_path": "/etc/passwd"})
    error_of(res, "refused")
    res = await s.call_tool("finch_push_image", {"image": f"{registry}/mcp/never-built:v1"})
    error_of(res, "not_found")
    res = await s.call_tool("lint", {"dockerfile_path": f"{bad}/Dockerfile"})
    check(not res.is_error and res.structured_content["findings"], "lint findings")


async def readonly(s, registry, ctx, bad):
    tools = await tools_are_described(s)
    args = {
        "finch_build_container_image": {"dockerfile_path": f"{ctx}/Dockerfile", "context_path": ctx},
        "finch_push_image": {"image": f"{registry}/ro/app:v1"},
        "finch_create_ecr_repo": {"repository_name": "ro/app"},
        "build": {"context_path": ctx},
        "push": {"source": f"oci:{ctx}", "destination": f"{registry}/ro/app:v1"},
        "copy": {"source": f"{registry}/ro/a:v1", "destination": f"{registry}/ro/b:v1"},
        "ensure_repository": {"repository": "ro/app"},
        "release": {"context_path": ctx, "repository": f"{registry}/ro/app"},
    }
    check(set(args) == WRITES, "every writing tool is tried")
    for name, a in args.items():
        res = await s.call_tool(name, a)
        e = error_of(res, "refused")
        check("--allow-writes" in (e.get("hint") or ""), f"{name}: says what to change: {e}")
    # Reading tools still work.
    res = await s.call_tool("lint", {"dockerfile_path": f"{ctx}/Dockerfile"})
    check(not res.is_error, f"lint on a read-only server: {res.structured_content}")
    res = await s.call_tool("list_images", {"repository": "ro/app"})
    error_of(res, "not_found")


async def refusals(url):
    """The registry's authentication in front of /mcp: no credentials, wrong ones, and a caller
    whose policies do not allow berth:InvokeMcp are refused with the registry's own codes."""
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-06-18", "capabilities": {},
                       "clientInfo": {"name": "refusals", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream",
               "Content-Type": "application/json"}
    wrong = "Basic " + base64.b64encode(b"AKIAWRONGWRONGWRONG1:nope").decode()
    async with httpx2.AsyncClient() as c:
        r = await c.post(url, json=init, headers=headers)
        check(r.status_code == 401, f"anonymous: {r.status_code} {r.text}")
        check("basic" in r.headers.get("www-authenticate", "").lower(),
              f"a Basic challenge: {dict(r.headers)}")
        r = await c.post(url, json=init, headers={**headers, "Authorization": wrong})
        check(r.status_code == 401, f"unknown key: {r.status_code} {r.text}")
        r = await c.post(url, json=init,
                         headers={**headers, "Authorization": os.environ["MCP_DENIED_AUTH"]})
        check(r.status_code == 403, f"not allowed: {r.status_code} {r.text}")
        body = r.json()
        check(body["errors"][0]["code"] == "DENIED", f"DENIED: {body}")
        check("berth:InvokeMcp" in body["errors"][0]["message"], f"names the action: {body}")


async def main():
    mode, target, registry, ctx, bad = sys.argv[1:6]
    if mode == "http":
        async with streamable_http_client(target) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                await full(s, registry, ctx, bad)
    elif mode in ("served", "served-ro"):
        if mode == "served":
            await refusals(target)
        client = create_mcp_http_client(headers={"Authorization": os.environ["MCP_AUTH"]})
        async with streamable_http_client(target, http_client=client) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                await (full if mode == "served" else readonly)(s, registry, ctx, bad)
    else:
        args = ["mcp", "--root", ctx, "--root", bad, "--insecure-registry", registry]
        if mode == "stdio":
            args.append("--allow-writes")
        params = StdioServerParameters(command=target, args=args, env=dict(os.environ))
        async with stdio_client(params) as (r, w):
            async with ClientSession(r, w) as s:
                await s.initialize()
                await (full if mode == "stdio" else readonly)(s, registry, ctx, bad)
    print("OK")


asyncio.run(main())
