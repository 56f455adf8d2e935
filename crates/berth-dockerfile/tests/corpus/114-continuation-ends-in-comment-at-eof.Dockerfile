FROM busybox
RUN echo a \
    b \
# trailing comment

