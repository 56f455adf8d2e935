FROM alpine
RUN <<EOF
echo this never ends
EOF-not-quite
