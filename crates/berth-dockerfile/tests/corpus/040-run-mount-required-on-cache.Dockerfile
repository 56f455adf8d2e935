FROM alpine
RUN --mount=type=cache,target=/c,required ls /c
