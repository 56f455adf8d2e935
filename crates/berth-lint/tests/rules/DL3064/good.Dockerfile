FROM debian:12
ENV DB_HOST=db PASSWORD_FILE=/run/secrets/db
