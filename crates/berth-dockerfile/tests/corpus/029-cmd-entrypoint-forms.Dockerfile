FROM busybox
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["--help"]
ENTRYPOINT exec /bin/app --flag
CMD []
CMD [""]
ENTRYPOINT []
CMD
ENTRYPOINT
cmd echo lower-case
