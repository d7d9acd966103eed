package main

import (
	"context"
	crand "crypto/rand"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	jsclient "github.com/loopcast/loopcast/clients/js"
	"github.com/loopcast/loopcast/server"
)

//go:embed demo/index.html
var demoPage []byte

// demoPages are the --demo pages: /demo/, the JavaScript client it
// loads and, with an HS256 secret to sign with, /demo/token.
func demoPages(secret string) map[string]server.Page {
	pages := map[string]server.Page{
		"/demo/":                   {ContentType: "text/html; charset=utf-8", Body: demoPage},
		"/demo/loopcast-client.js": {ContentType: "text/javascript; charset=utf-8", Body: jsclient.Source},
	}
	if secret != "" {
		pages["/demo/token"] = server.Page{ContentType: "application/json", Dynamic: func(q []byte) []byte { return demoToken(secret, q) }}
	}
	return pages
}

// demoRooms are the demo's rooms; demo.chat lists its users.
const demoRooms, demoPresence = "demo.*", "demo.chat"

// demoSetup makes cfg ready for the demo: demo.chat a presence room and,
// when no token key is configured, JWT verification with a secret made
// now (generated), so that /demo/token can name the demo's users. It
// returns the HS256 secret the demo signs with ("" when it has none).
func demoSetup(cfg *server.Config) (secret string, generated bool, err error) {
	if !slices.Contains(cfg.PresenceRooms, demoPresence) {
		cfg.PresenceRooms = append(cfg.PresenceRooms, demoPresence)
	}
	if cfg.JWTSecret == "" && cfg.JWTSecretFile == "" && cfg.JWTPublicKey == "" && cfg.JWTJWKSURL == "" {
		b := make([]byte, 32)
		if _, err := crand.Read(b); err != nil {
			return "", false, err
		}
		cfg.JWTSecret = hex.EncodeToString(b)
		generated = true
	}
	return cfg.JWTSecret, generated, nil
}

// demoTokenTTL is how long a /demo/token token is valid.
const demoTokenTTL = 12 * time.Hour

// demoToken answers /demo/token?user=NAME: {"token": JWT} for the demo.*
// rooms, sub NAME (1 to 24 of A-Z a-z 0-9 _ -; otherwise guest-NNNN)
// and info {"name": NAME}.
func demoToken(secret string, query []byte) []byte {
	q, _ := url.ParseQuery(string(query))
	user := q.Get("user")
	if user == "" || len(user) > 24 || strings.Trim(user, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-") != "" {
		user = fmt.Sprintf("guest-%04d", rand.IntN(10000))
	}
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"sub": user, "exp": time.Now().Add(demoTokenTTL).Unix(), "rooms": []string{demoRooms},
		"info": map[string]string{"name": user},
	}).SignedString([]byte(secret))
	if err != nil {
		return []byte(`{"error":"cannot sign"}`)
	}
	b, _ := json.Marshal(map[string]string{"token": tok, "user": user})
	return b
}

// demoTickerInterval is how often the demo's ticker publishes.
const demoTickerInterval = 500 * time.Millisecond

// runDemoTicker publishes a made-up quote to room demo.ticker every
// demoTickerInterval until ctx ends.
func runDemoTicker(ctx context.Context, srv *server.Server, log *slog.Logger) {
	t := time.NewTicker(demoTickerInterval)
	defer t.Stop()
	bid := 1.0842
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			bid += (rand.Float64() - 0.5) / 1000
			msg := fmt.Appendf(nil, `{"symbol":"EURUSD","bid":%.5f,"ask":%.5f,"ts":%d}`, bid, bid+0.0002, now.UnixMilli())
			if _, err := srv.Publish("demo.ticker", server.Text, msg); err != nil {
				log.Debug("demo ticker", "err", err)
			}
		}
	}
}
