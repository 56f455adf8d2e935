ARG VERSION
ARG DEBIAN=bookworm
FROM debian:${DEBIAN}
ARG QUOTED="a quoted value"
ARG SINGLE='single $quoted'
ARG EMPTY=
ARG ONE TWO=2 THREE="3 3"
ARG ESCAPED=a\ b
arg lower=case
ARG VERSION
