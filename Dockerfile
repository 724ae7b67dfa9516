# One image with every idwire program: the three example services (user,
# order, payment), mtlsca and the demo. docker-compose.yaml picks the program
# per container with `entrypoint`.
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
RUN go build -trimpath -ldflags="-s -w" -o /out/bin/ \
      ./services/user ./services/order ./services/payment ./cmd/mtlsca ./cmd/demo
# Mount points for the certificate volumes, owned by the nonroot user so
# that a fresh volume mounted there is writable by `mtlsca bootstrap`.
RUN mkdir -p /out/idwire/user /out/idwire/order /out/idwire/payment /out/idwire/frontend /out/idwire/admin

# distroless/static: no shell, no package manager; :nonroot runs as 65532.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build --chown=65532:65532 /out/idwire/ /idwire/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/demo"]
