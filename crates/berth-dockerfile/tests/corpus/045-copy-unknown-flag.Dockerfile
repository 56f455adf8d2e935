FROM alpine
COPY --chwon=1000:1000 app /app
