FROM postgres:16
VOLUME ["/var/lib/postgresql/data", "/var/log/postgresql"]
VOLUME /data /logs
VOLUME /single
VOLUME ["/json/one"]
VOLUME $DATA_DIR
