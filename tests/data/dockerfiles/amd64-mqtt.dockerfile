# A cross-platform build as BuildKit users write it: the automatic platform ARGs pick a
# stage and a tag without being declared; COPY --from pulls a helper image directly.
FROM --platform=$BUILDPLATFORM golang:1.22.4 AS build-linux
FROM mcr.microsoft.com/windows/nanoserver:ltsc2022 AS build-windows
FROM build-$TARGETOS AS build
ARG TARGETARCH
ARG XX=docker.io/tonistiigi/xx:1.4.0
COPY --from=${XX} / /
RUN GOARCH=$TARGETARCH go build -o /out/mqtt .

FROM gcr.io/distroless/static-debian12:nonroot-${TARGETARCH}
COPY --from=build /out/mqtt /mqtt
COPY --from=0 /etc/ssl /etc/ssl
COPY --from=docker.io/library/busybox:latest /bin/sh /bin/sh
