// Package clients holds loopcast's client libraries: js/ (the
// loopcast.v1 client for browsers and Node). Its Go test runs the
// JavaScript client's tests (node --test) against the real loopcast
// binary, so `go test ./...` covers them.
package clients
