FROM python:3.12-slim
RUN python3 /dev/fd/3 3<<EOF
print("read from fd 3")
EOF
RUN cat 0<<IN
on stdin
IN
