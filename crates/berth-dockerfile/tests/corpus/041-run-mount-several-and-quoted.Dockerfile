FROM python:3.12
RUN --mount="type=cache,target=/root/.cache/pip" \
    --mount=type=bind,source=requirements.txt,target=/tmp/requirements.txt \
    --mount='type=secret,id=pip_conf,target=/etc/pip.conf' \
    --network=default \
    pip install -r /tmp/requirements.txt
RUN --mount='type=bind,"source=dir,with,commas",target=/x' ls /x
RUN --mount=type=cache,target=/c --mount=type=tmpfs,target=/t -- ls /c /t
