package svgchart

import (
	"bytes"
	"encoding/xml"
	"io"
	"math"
	"testing"
)

func wellFormed(t *testing.T, b []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(b))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, b)
		}
	}
}

func TestLine(t *testing.T) {
	c := &Line{Title: "deliveries/s <1 core>", XLabel: "subscribers", YLabel: "msg/s", X: []string{"1k", "5k", "15k"},
		Series: []Series{{Name: "loopcast", Y: []float64{3e6, 2e6, 1e6}}, {Name: "a&b", Y: []float64{1e5, math.NaN(), 5e4}}}}
	a := c.SVG()
	wellFormed(t, a)
	if !bytes.Equal(a, c.SVG()) {
		t.Fatal("output not deterministic")
	}
	if bytes.Count(a, []byte("<polyline")) != 2 || bytes.Count(a, []byte("<circle")) != 5 {
		t.Fatalf("wrong number of lines/points:\n%s", a)
	}
	c.LogY = true
	wellFormed(t, c.SVG())
	wellFormed(t, (&Line{Title: "empty"}).SVG())
}

func TestBars(t *testing.T) {
	c := &Bars{Title: "bytes per connection", Unit: "bytes", Bars: []Bar{{"loopcast", 600, ""}, {"gorilla", 20000, ""}}}
	wellFormed(t, c.SVG())
}

func TestTicks(t *testing.T) {
	if got := niceTicks(97); got[len(got)-1] < 97 || len(got) > 8 {
		t.Fatalf("niceTicks(97) = %v", got)
	}
	if got := logTicks(150, 90000); got[0] != 100 || got[len(got)-1] != 100000 {
		t.Fatalf("logTicks = %v", got)
	}
	if fmtNum(2500000) != "2.5M" || fmtNum(15000) != "15k" || fmtNum(0.5) != "0.5" {
		t.Fatal(fmtNum(2500000), fmtNum(15000))
	}
}
