FROM golang:1.22
WORKDIR /src
RUN --mount=type=bind,target=. go build ./...
RUN --mount=type=bind,source=go.mod,target=go.mod,ro go mod download
RUN --mount=type=bind,src=.,dst=/work,rw touch /work/scratch
RUN --mount=type=bind,source=.,destination=/w,readwrite=true ls /w
RUN --mount=type=bind,target=/w,readonly=false,from=build ls /w
RUN --mount=target=/default-is-bind ls /default-is-bind
RUN --mount=type=BIND,target=/upper ls /upper
