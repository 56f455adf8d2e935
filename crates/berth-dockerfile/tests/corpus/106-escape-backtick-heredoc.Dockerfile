# escape=`
FROM alpine
RUN <<EOF cat > /script.sh
echo C:\path\with\backslashes
EOF
ENV DIR=C:\data `
    MODE=fast
