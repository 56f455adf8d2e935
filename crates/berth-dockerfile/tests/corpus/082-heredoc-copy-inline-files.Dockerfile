FROM nginx:alpine
COPY <<EOF /usr/share/nginx/html/index.html
<h1>Hello</h1>
EOF
COPY <<robots.txt <<humans.txt /usr/share/nginx/html/
User-agent: *
Disallow:
robots.txt
Made by people.
humans.txt
COPY --chmod=0755 <<-'EOF' /usr/local/bin/hello
	#!/bin/sh
	echo "$0"
	EOF
ADD <<EOF /etc/added.conf
key=value
EOF
