# One image with every idwire program: every service under services/ (each
# ./services/NAME with a main.go), mtlsca and the demo. docker-compose.yaml
# picks the program per container with `entrypoint`. A new service needs no
# edit here.
#
#   docker build -t idwire:dev .
#   docker run --rm idwire:dev            # the embedded demo, no setup needed

FROM golang:1.26 AS build
WORKDIR /src
# Static binaries: the runtime image has no libc.
ENV CGO_ENABLED=0
# Dependencies first, so that code changes reuse this layer.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN go build -trimpath -ldflags="-s -w" -o /out/bin/ ./services/... ./cmd/mtlsca ./cmd/demo
# Mount points for the certificate volumes (one per service, plus the
# frontend and admin callers), owned by the nonroot user so that a fresh
# volume mounted there is writable by `mtlsca bootstrap`.
RUN for main in services/*/main.go; do mkdir -p "/out/idwire/$(basename "$(dirname "$main")")"; done && \
    mkdir -p /out/idwire/frontend /out/idwire/admin

# distroless/static: no shell, no package manager; :nonroot runs as 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/idwire/ /idwire/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/demo"]
