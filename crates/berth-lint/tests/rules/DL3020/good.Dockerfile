FROM debian:12
ADD app.tar.gz /opt/
ADD https://example.com/x.txt /x.txt
COPY app.py /app/
