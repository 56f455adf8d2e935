FROM alpine
RUN <<EOF \
    && echo after the marker
echo body
EOF 
  EOF
EOF
RUN echo next
