FROM golang:1.22.12 AS build
WORKDIR /src
COPY . .
RUN CGO_ENABLED=0 go build -o /out/server ./cmd/server

FROM gcr.io/distroless/static-debian13:nonroot AS runtime
COPY --from=build /out/server /server
USER nonroot
ENTRYPOINT ["/server"]
