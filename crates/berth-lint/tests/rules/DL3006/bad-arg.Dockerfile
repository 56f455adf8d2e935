# lines: 3
ARG BASE=debian
FROM ${BASE}
