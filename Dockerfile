# syntax=docker/dockerfile:1
#
# credlet: one image with both programs.
#   /credlet-agent     the sidecar; the image's entrypoint, because the
#                      injector adds it to pods with args only
#   /credlet-injector  the webhook; its Deployment sets command: [/credlet-injector]
#
#   docker build --build-arg VERSION=$(git describe --tags --always) \
#     --build-arg COMMIT=$(git rev-parse --short HEAD) -t REGISTRY/credlet:TAG .
#
# Static binaries (CGO_ENABLED=0) built with the same flags as `make build`,
# on distroless/static: no shell, no package manager, user 65532.
# manifests/dockerfile_test.go checks all of this and runs the build
# commands below.

ARG GO_VERSION=1.26

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
ARG COMMIT=none
ENV CGO_ENABLED=0
RUN go build -trimpath -ldflags "-s -w -X github.com/credlet/credlet/internal/version.Version=${VERSION} -X github.com/credlet/credlet/internal/version.Commit=${COMMIT}" -o /out/credlet-agent ./agent
RUN go build -trimpath -ldflags "-s -w -X github.com/credlet/credlet/internal/version.Version=${VERSION} -X github.com/credlet/credlet/internal/version.Commit=${COMMIT}" -o /out/credlet-injector ./injector

FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
ARG COMMIT=none
LABEL org.opencontainers.image.title="credlet" \
      org.opencontainers.image.description="Vault credentials into Kubernetes trading pods: credlet-agent (sidecar) and credlet-injector (admission webhook)" \
      org.opencontainers.image.source="https://github.com/credlet/credlet" \
      org.opencontainers.image.url="https://github.com/credlet/credlet" \
      org.opencontainers.image.documentation="https://github.com/credlet/credlet#readme" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.base.name="gcr.io/distroless/static-debian12:nonroot"
COPY --from=build /out/credlet-agent /credlet-agent
COPY --from=build /out/credlet-injector /credlet-injector
USER 65532:65532
ENTRYPOINT ["/credlet-agent"]
