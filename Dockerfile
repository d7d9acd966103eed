# syntax=docker/dockerfile:1
#
# loopcast: one static binary on distroless. Build context = this repository.
#   docker build -t loopcast .            (or: az acr build -t loopcast:TAG -r REGISTRY .)
# deploy/deploy_test.go parses this file and runs the `go build` line below.

# Builder pinned by tag, not digest: golang:1.26 follows go.mod's `go 1.26.x`
# and picks up 1.26 patch releases. Pin a digest (golang:1.26@sha256:...) if
# you need bit-for-bit rebuilds.
FROM --platform=$BUILDPLATFORM golang:1.26 AS build
WORKDIR /src
COPY . .
# Set by BuildKit from --platform (docker buildx build --platform linux/arm64).
# No defaults here: a default would override BuildKit's value. Empty means
# Go's own default, the builder's platform.
ARG TARGETOS
ARG TARGETARCH
# Static: no cgo, so no libc and no ELF interpreter. -trimpath drops local
# paths; -buildvcs=false because .dockerignore keeps .git out of the context.
# No `go mod download`: it would fetch every module of go.mod, the tests'
# Kubernetes, kustomize, BuildKit and NATS server included; go build fetches
# only what the binary imports, into a cache mount kept between builds
# (BuildKit: docker buildx, and ACR Tasks, which builds with BuildKit when
# the file starts with a syntax directive as this one does).
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/loopcast ./cmd/loopcast

# distroless static, tag :nonroot = uid/gid 65532, CA certificates and tzdata,
# no shell and no package manager (hence lifecycle.preStop.sleep, not exec).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/loopcast /loopcast
# Numeric, so the kubelet can enforce runAsNonRoot without reading /etc/passwd.
USER 65532:65532
# 8080: WebSockets + health (Application Gateway's backend port).
# 9090: admin (metrics, publish, rooms); never exposed through the Ingress.
EXPOSE 8080 9090
ENTRYPOINT ["/loopcast"]
