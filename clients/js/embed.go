// Package jsclient embeds the JavaScript client (index.js) for the
// server's demo page; the npm package is this directory.
package jsclient

import _ "embed"

// Source is index.js.
//
//go:embed index.js
var Source []byte
