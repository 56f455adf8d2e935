FROM debian:12
ENV A=1
ENV B=$A
