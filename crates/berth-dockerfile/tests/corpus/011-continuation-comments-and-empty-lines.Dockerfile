FROM debian:bookworm
RUN apt-get update && \
# install the tools
    apt-get install -y \

        curl \
    # indented comment
        git \

    && rm -rf /var/lib/apt/lists/*
