# syntax=docker/dockerfile:1.7
# check=skip=JSONArgsRecommended,StageNameCasing;error=true

# The directives above are kept; this line is an ordinary comment.
FROM alpine:3.20
RUN echo hello
