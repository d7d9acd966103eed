// Package svgchart draws the simple line and bar charts of BENCHMARKS.md as
// self-contained SVG: no external tool, deterministic output (the same data
// gives the same bytes, so committed charts diff cleanly).
package svgchart

import (
	"bytes"
	"fmt"
	"html"
	"math"
	"strconv"
)

// Palette colours series in order (colour-blind safe, Okabe–Ito).
var Palette = []string{"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"}

// Series is one named line.
type Series struct {
	Name  string
	Color string    // empty: from Palette by position
	Y     []float64 // one value per X category; NaN: no point
}

// Line is a line chart over categorical X values (e.g. 1k, 5k, 15k
// subscribers), evenly spaced.
type Line struct {
	Title, XLabel, YLabel string
	X                     []string
	Series                []Series
	LogY                  bool // logarithmic Y axis (latencies spanning decades)
}

const (
	width, height          = 640, 360
	left, right, top, bott = 80, 150, 40, 50
)

func fmtNum(v float64) string {
	a := math.Abs(v)
	switch {
	case a >= 1e6:
		return strconv.FormatFloat(v/1e6, 'g', 3, 64) + "M"
	case a >= 1e3:
		return strconv.FormatFloat(v/1e3, 'g', 3, 64) + "k"
	default:
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

// niceTicks returns round tick values covering [0, max].
func niceTicks(max float64) []float64 {
	if max <= 0 {
		return []float64{0, 1}
	}
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var t []float64
	for v := 0.0; v < max+step*0.999; v += step {
		t = append(t, v)
	}
	return t
}

// logTicks returns powers of ten covering [min, max].
func logTicks(min, max float64) []float64 {
	lo := math.Floor(math.Log10(min))
	hi := math.Ceil(math.Log10(max))
	if hi == lo {
		hi++
	}
	var t []float64
	for e := lo; e <= hi; e++ {
		t = append(t, math.Pow(10, e))
	}
	return t
}

func header(b *bytes.Buffer, title string) {
	fmt.Fprintf(b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(b, `<rect width="%d" height="%d" fill="#fff"/>`+"\n", width, height)
	fmt.Fprintf(b, `<text x="%d" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", left, html.EscapeString(title))
}

// SVG renders the chart.
func (c *Line) SVG() []byte {
	var b bytes.Buffer
	header(&b, c.Title)
	pw, ph := float64(width-left-right), float64(height-top-bott)
	// Y range.
	minV, maxV := math.Inf(1), 0.0
	for _, s := range c.Series {
		for _, v := range s.Y {
			if !math.IsNaN(v) && v > 0 {
				minV = math.Min(minV, v)
				maxV = math.Max(maxV, v)
			}
		}
	}
	if math.IsInf(minV, 1) {
		minV, maxV = 1, 10
	}
	var ticks []float64
	var ypos func(float64) float64
	if c.LogY {
		ticks = logTicks(minV, maxV)
		lo, hi := math.Log10(ticks[0]), math.Log10(ticks[len(ticks)-1])
		ypos = func(v float64) float64 { return float64(top) + ph - (math.Log10(v)-lo)/(hi-lo)*ph }
	} else {
		ticks = niceTicks(maxV)
		hi := ticks[len(ticks)-1]
		ypos = func(v float64) float64 { return float64(top) + ph - v/hi*ph }
	}
	xpos := func(i int) float64 {
		if len(c.X) <= 1 {
			return float64(left) + pw/2
		}
		return float64(left) + 20 + float64(i)*(pw-40)/float64(len(c.X)-1)
	}
	// Grid and axes.
	for _, t := range ticks {
		y := ypos(t)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`+"\n", left, y, width-right, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+4, fmtNum(t))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", left, height-bott, width-right, height-bott)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="#333"/>`+"\n", left, top, left, height-bott)
	for i, x := range c.X {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", xpos(i), height-bott+16, html.EscapeString(x))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(left)+pw/2, height-12, html.EscapeString(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", float64(top)+ph/2, html.EscapeString(c.YLabel))
	// Series.
	for si, s := range c.Series {
		col := s.Color
		if col == "" {
			col = Palette[si%len(Palette)]
		}
		var pts bytes.Buffer
		for i, v := range s.Y {
			if i >= len(c.X) || math.IsNaN(v) || v <= 0 {
				continue
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", xpos(i), ypos(v))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"><title>%s: %s</title></circle>`+"\n",
				xpos(i), ypos(v), col, html.EscapeString(s.Name), fmtNum(v))
		}
		if pts.Len() > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", col, bytes.TrimSpace(pts.Bytes()))
		}
		ly := top + 10 + si*20
		fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s" stroke-width="3"/>`+"\n", width-right+12, ly, width-right+32, ly, col)
		fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", width-right+38, ly+4, html.EscapeString(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}

// Bar is one labelled value.
type Bar struct {
	Label string
	Value float64
	Color string
}

// Bars is a horizontal bar chart.
type Bars struct {
	Title, Unit string
	Bars        []Bar
}

// SVG renders the chart.
func (c *Bars) SVG() []byte {
	var b bytes.Buffer
	header(&b, c.Title)
	maxV := 0.0
	for _, x := range c.Bars {
		maxV = math.Max(maxV, x.Value)
	}
	ticks := niceTicks(maxV)
	hi := ticks[len(ticks)-1]
	pw := float64(width - left - 60)
	rowH := math.Min(36, float64(height-top-bott)/math.Max(1, float64(len(c.Bars))))
	for _, t := range ticks {
		x := float64(left) + t/hi*pw
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", x, top, x, height-bott)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, height-bott+16, fmtNum(t))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", float64(left)+pw/2, height-12, html.EscapeString(c.Unit))
	for i, x := range c.Bars {
		col := x.Color
		if col == "" {
			col = Palette[i%len(Palette)]
		}
		y := float64(top) + float64(i)*rowH + 4
		w := x.Value / hi * pw
		fmt.Fprintf(&b, `<rect x="%d" y="%.1f" width="%.1f" height="%.1f" fill="%s"/>`+"\n", left, y, w, rowH-8, col)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y+rowH/2, html.EscapeString(x.Label))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", float64(left)+w+4, y+rowH/2, fmtNum(x.Value))
	}
	b.WriteString("</svg>\n")
	return b.Bytes()
}
