FROM alpine
ARG --not-checked NAME=value
STOPSIGNAL --not-checked-either SIGINT
