FROM alpine
RUN --mount=type=bind,target=/src,mode=0644 ls /src
