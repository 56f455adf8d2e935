# lines: 3
FROM debian:12
CMD nginx -g 'daemon off;'
