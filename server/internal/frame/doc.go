// Package frame parses and writes RFC 6455 WebSocket frames in place.
//
// Parse decodes a frame header from the front of a byte slice without
// copying or allocating, and reports ErrIncomplete when the slice holds
// only part of it, so callers can wait for more bytes from the network.
// CheckClient applies the rules a server enforces on frames from a
// client (§5.1–§5.5). Parsing never trusts a declared length: it only
// reports it, and the caller decides whether to wait for that many bytes.
//
// UTF8 validates text incrementally across fragments and TCP reads, and
// ParseClose validates close frame bodies (§5.5.1, §7.4).
package frame
