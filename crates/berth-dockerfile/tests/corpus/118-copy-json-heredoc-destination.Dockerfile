FROM alpine
COPY ["app.conf", "<<EOF"]
