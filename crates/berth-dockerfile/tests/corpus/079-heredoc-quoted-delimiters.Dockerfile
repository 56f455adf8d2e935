FROM alpine
ENV GREETING=hi
RUN <<'EOF' cat > /single.sh
echo "$GREETING is not expanded by the builder"
EOF
RUN <<"EOF" cat > /double.sh
echo "$GREETING is not expanded either"
EOF
RUN <<E"O"F cat > /partial.sh
partially quoted
EOF
RUN <<EOF cat > /expanded.txt
$GREETING is expanded
EOF
