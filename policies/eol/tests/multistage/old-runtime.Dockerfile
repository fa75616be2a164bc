FROM golang:1.26.4 AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -o /out/server ./cmd/server

FROM gcr.io/distroless/static-debian11 AS runtime
COPY --from=build /out/server /server
ENTRYPOINT ["/server"]
