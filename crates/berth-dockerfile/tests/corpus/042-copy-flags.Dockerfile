FROM alpine
COPY --chown=1000:1000 --chmod=0755 entrypoint.sh /usr/local/bin/
COPY --chown="app:app" --chmod=u+rwx,g+rx app/ /app/
COPY --link dist/ /srv/
COPY --link=false dist/ /srv/
COPY --link=TRUE dist/ /srv/
COPY --parents ./src/**/*.go /build/
COPY --exclude=*.md --exclude=tests/ --exclude="**/*.tmp" . /app/
COPY -- --weird-file /dst/
COPY --chown=app -- -n /dst/
COPY a.txt b.txt c.txt /dest/
