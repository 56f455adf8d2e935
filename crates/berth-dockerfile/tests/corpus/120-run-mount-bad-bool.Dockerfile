FROM alpine
RUN --mount=type=bind,target=/w,readonly=TrUe ls /w
