FROM alpine
ARG CACHE_ID=apt
RUN --mount=type=cache,id=${CACHE_ID},target=/var/cache/apt,uid=$UID apt-get update
RUN --mount=type=secret,id=$SECRET_NAME,target=${SECRET_PATH} true
