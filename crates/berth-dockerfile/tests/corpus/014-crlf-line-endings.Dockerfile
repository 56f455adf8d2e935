FROM busybox
RUN echo a \
    b
COPY <<EOF /etc/motd
hello
EOF
CMD ["sh"]
