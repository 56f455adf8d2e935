FROM busybox
RUN
RUN --network=none
CMD
ENTRYPOINT
