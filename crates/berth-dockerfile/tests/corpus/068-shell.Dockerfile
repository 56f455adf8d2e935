FROM mcr.microsoft.com/windows/servercore:ltsc2022
SHELL ["powershell", "-Command", "$ErrorActionPreference = 'Stop';"]
RUN Write-Host hello
SHELL ["cmd", "/S", "/C"]
FROM debian
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN curl -fsS https://example.com | wc -l
