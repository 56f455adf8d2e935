# syntax=docker/dockerfile:1

# escape=`
FROM busybox
RUN echo the backtick is not the escape here `
RUN echo so this is a second instruction
