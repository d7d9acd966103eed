package main

import (
	"context"
	_ "embed"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	jsclient "github.com/loopcast/loopcast/clients/js"
	"github.com/loopcast/loopcast/server"
)

//go:embed demo/index.html
var demoPage []byte

// demoPages are the --demo pages: /demo/ and the JavaScript client it
// loads.
func demoPages() map[string]server.Page {
	return map[string]server.Page{
		"/demo/":                   {ContentType: "text/html; charset=utf-8", Body: demoPage},
		"/demo/loopcast-client.js": {ContentType: "text/javascript; charset=utf-8", Body: jsclient.Source},
	}
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
