# lines: 3
FROM debian:12
ADD app.py /app/
