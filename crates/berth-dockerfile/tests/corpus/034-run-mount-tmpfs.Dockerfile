FROM alpine
RUN --mount=type=tmpfs,target=/tmp make
RUN --mount=type=tmpfs,target=/tmp,size=64m make
RUN --mount=type=tmpfs,target=/tmp,size=1024 make
RUN --mount=type=tmpfs,target=/tmp,size=1.5g make
RUN --mount=type=tmpfs,target=/tmp,size=512MiB make
RUN --mount="type=tmpfs,target=/tmp,size=64 kb" --mount=type=tmpfs,target=/t2,size=2GB make
RUN --mount=type=tmpfs,target=/tmp,size=1e3 make
