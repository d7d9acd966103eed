// Package deploy holds loopcast's Kubernetes manifests (kustomize base and
// the agic, agc and nats overlays) and no code. Its tests render every overlay with
// the kustomize API, decode each object strictly into Kubernetes types, check
// that the objects agree with each other and with the real server (probe
// paths served, ports, timeouts, drain budget), and parse and build the
// repository's Dockerfile. See README.md.
package deploy
