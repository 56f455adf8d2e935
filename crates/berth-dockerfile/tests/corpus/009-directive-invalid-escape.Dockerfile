# escape=|
FROM busybox
