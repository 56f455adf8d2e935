FROM debian:12
COPY <<EOF /notes.txt
apt-get install curl
EOF
