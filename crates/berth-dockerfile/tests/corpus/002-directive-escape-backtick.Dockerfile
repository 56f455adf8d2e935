# escape=`

FROM mcr.microsoft.com/windows/servercore:ltsc2022
WORKDIR C:\app
COPY testfile.txt C:\app\
ENV GREETING=hello` world PATH_TAIL=C:\tools
RUN powershell -Command `
    $ErrorActionPreference = 'Stop'; `
    Write-Host \"done\"
LABEL note="ends with backslash\"
RUN dir C:\ `
    && echo ok
