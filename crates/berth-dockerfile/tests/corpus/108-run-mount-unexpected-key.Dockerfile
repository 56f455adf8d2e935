FROM alpine
RUN --mount=type=cache,tagret=/c ls
