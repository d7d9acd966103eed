# loopcast: one static binary on distroless. Build context = this repository.
#   docker build -t loopcast .
#   az acr build -r REGISTRY -t loopcast:TAG .
#
# Written for the classic builder as well as BuildKit: ACR Tasks
# (`az acr build`) runs the classic builder, which has no RUN --mount and
# whose dependency scanner rejects FROM --platform=$BUILDPLATFORM
# (Azure/acr#697, Azure/acr#721), so this file uses neither. For arm64
# node pools build on an arm64 agent (`az acr build --platform linux/arm64`)
# or with `docker buildx build --platform linux/arm64` (emulated).
# deploy/dockerfile_test.go parses this file, checks it keeps to what the
# classic builder accepts, and runs the `go build` line below.

# Builder pinned by tag, not digest: golang:1.26 follows go.mod's `go 1.26.x`
# and picks up 1.26 patch releases. Pin a digest (golang:1.26@sha256:...) if
# you need bit-for-bit rebuilds.
FROM golang:1.26 AS build
WORKDIR /src
COPY . .
# Static: no cgo, so no libc and no ELF interpreter. -trimpath drops local
# paths; -buildvcs=false because .dockerignore keeps .git out of the context.
# No `go mod download`: it would fetch every module of go.mod, the tests'
# Kubernetes, kustomize, BuildKit and NATS server modules included; go build
# fetches only what the binary imports (about a tenth of them).
RUN CGO_ENABLED=0 go build -trimpath -buildvcs=false -ldflags="-s -w" -o /out/loopcast ./cmd/loopcast

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
