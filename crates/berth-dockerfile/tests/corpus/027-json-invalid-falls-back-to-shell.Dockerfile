FROM busybox
CMD ['echo', 'single quotes are not JSON']
CMD ["echo", "unterminated]
ENTRYPOINT ["echo", "trailing comma",]
RUN [not, json]
RUN ["echo", "ok"] && echo trailing text
CMD ["echo", "json inside string: [\"a\"]"]
