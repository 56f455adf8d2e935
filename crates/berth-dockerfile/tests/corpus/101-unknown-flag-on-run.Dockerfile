FROM alpine
RUN --mnt=type=cache,target=/c ls
