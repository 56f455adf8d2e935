FROM alpine
ONBUILD RUN <<EOF
echo building a child image
EOF
ONBUILD COPY <<EOF /etc/child.conf
child=1
EOF
RUN true
