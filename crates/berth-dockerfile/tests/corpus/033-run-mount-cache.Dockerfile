FROM golang:1.22
RUN --mount=type=cache,target=/root/.cache/go-build go build ./...
RUN --mount=type=cache,id=apt,target=/var/cache/apt,sharing=locked apt-get update
RUN --mount=type=cache,target=/cache,sharing=private,mode=0755,uid=1000,gid=1000 ls /cache
RUN --mount=type=cache,target=/c,sharing=shared,ro ls /c
RUN --mount=type=cache,target=/c,from=seed,source=/seed ls /c
