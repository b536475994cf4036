package main

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"os"
	"slices"
	"time"
)

// series is one latency distribution: sorted samples.
type series struct {
	label   string
	samples []time.Duration
	color   color.RGBA
}

// panel is one chart: the CDF of each series, x on a log scale (latencies
// spanning decades) or linear (propagation times).
type panel struct {
	title  string
	log    bool
	series []series
}

// Colours: credlet in blues, the anchor (Vault Agent, vault-k8s) red,
// direct Vault green.
var (
	credletBlue = color.RGBA{0x1f, 0x77, 0xb4, 0xff}
	credletTeal = color.RGBA{0x17, 0xbe, 0xcf, 0xff}
	anchorRed   = color.RGBA{0xd6, 0x27, 0x28, 0xff}
	anchorPink  = color.RGBA{0xf0, 0x8a, 0x8b, 0xff}
	directGreen = color.RGBA{0x2c, 0xa0, 0x2c, 0xff}
)

var (
	black = color.RGBA{0, 0, 0, 0xff}
	grey  = color.RGBA{0xdd, 0xdd, 0xdd, 0xff}
	dark  = color.RGBA{0x55, 0x55, 0x55, 0xff}
)

const (
	chartW    = 1000
	panelH    = 370
	marginL   = 80
	marginR   = 30
	marginTop = 40
	plotH     = 200
	// The y axis is the percentile on a -log10(1-q) scale (0, 0.9, 0.99,
	// 0.999 evenly spaced), so tails are visible.
	yMaxNines = 3.0
)

// yOf maps a cumulative fraction to the plot's height fraction.
func yOf(q float64) float64 {
	q = min(q, 1-math.Pow(10, -yMaxNines))
	return -math.Log10(1-q) / yMaxNines
}

// renderChart draws the panels one under another.
func renderChart(panels []panel) *image.RGBA {
	if len(panels) == 0 {
		panels = []panel{{title: "no latency was measured (see results.md)"}}
	}
	img := image.NewRGBA(image.Rect(0, 0, chartW, panelH*len(panels)))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for i, p := range panels {
		drawPanel(img, 0, i*panelH, p)
	}
	return img
}

func drawPanel(img *image.RGBA, ox, oy int, p panel) {
	drawText(img, ox+marginL, oy+12, 2, black, p.title)
	x0, y0 := ox+marginL, oy+marginTop
	w, h := chartW-marginL-marginR, plotH
	lo, hi := xRange(p)
	if hi <= lo {
		drawText(img, x0, y0+h/2, 2, dark, "no data")
		return
	}
	xOf := func(d time.Duration) int {
		v := float64(d)
		if p.log {
			v = math.Log10(max(v, lo))
			return x0 + int(float64(w)*(v-math.Log10(lo))/(math.Log10(hi)-math.Log10(lo)))
		}
		return x0 + int(float64(w)*(v-lo)/(hi-lo))
	}
	// Grid and axis labels.
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999} {
		y := y0 + h - int(yOf(q)*float64(h))
		hline(img, x0, x0+w, y, grey)
		if q > 0 { // P0 would overlap P50 at the bottom
			drawText(img, ox+4, y-7, 2, dark, fmt.Sprintf("P%g", q*100))
		}
	}
	for _, t := range xTicks(lo, hi, p.log) {
		x := xOf(time.Duration(t))
		vline(img, x, y0, y0+h, grey)
		label := fmtDur(time.Duration(t))
		drawText(img, x-textWidth(label, 2)/2, y0+h+8, 2, dark, label)
	}
	hline(img, x0, x0+w, y0+h, black)
	vline(img, x0, y0, y0+h, black)
	// CDF curves.
	for i, s := range p.series {
		if len(s.samples) == 0 {
			continue
		}
		c := s.color
		prevY := -1
		for x := x0; x <= x0+w; x++ {
			var d time.Duration
			frac := float64(x-x0) / float64(w)
			if p.log {
				d = time.Duration(math.Pow(10, math.Log10(lo)+frac*(math.Log10(hi)-math.Log10(lo))))
			} else {
				d = time.Duration(lo + frac*(hi-lo))
			}
			n, _ := slices.BinarySearch(s.samples, d+1)
			y := y0 + h - int(yOf(float64(n)/float64(len(s.samples)))*float64(h))
			if prevY < 0 {
				prevY = y
			}
			for yy := min(y, prevY); yy <= max(y, prevY); yy++ {
				fill(img, x-1, yy-1, 3, 3, c)
			}
			prevY = y
		}
		// Legend entry below the axis labels.
		lx := x0
		ly := y0 + h + 34 + i*22
		fill(img, lx, ly+4, 24, 6, c)
		legend := fmt.Sprintf("%s  P50 %s  P99 %s  N=%d", s.label, fmtDur(percentile(s.samples, 0.5)),
			fmtDur(percentile(s.samples, 0.99)), len(s.samples))
		drawText(img, lx+32, ly, 2, black, legend)
	}
}

// xRange is the x axis span: whole decades around the data on a log axis,
// zero to the largest sample (rounded up) on a linear one.
func xRange(p panel) (float64, float64) {
	lo, hi := math.Inf(1), 0.0
	for _, s := range p.series {
		if len(s.samples) == 0 {
			continue
		}
		lo = min(lo, float64(max(s.samples[0], time.Microsecond)))
		hi = max(hi, float64(s.samples[len(s.samples)-1]))
	}
	if hi == 0 {
		return 0, 0
	}
	if p.log {
		return math.Pow(10, math.Floor(math.Log10(lo))), math.Pow(10, math.Ceil(math.Log10(hi)))
	}
	step := linearStep(hi)
	return 0, math.Ceil(hi/step) * step
}

// linearStep picks a tick spacing giving at most 12 ticks up to hi.
func linearStep(hi float64) float64 {
	for _, s := range []time.Duration{100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 5 * time.Second, 10 * time.Second, 30 * time.Second, time.Minute} {
		if hi/float64(s) <= 12 {
			return float64(s)
		}
	}
	return float64(5 * time.Minute)
}

func xTicks(lo, hi float64, log bool) []float64 {
	var out []float64
	if log {
		for v := lo; v <= hi*1.0001; v *= 10 {
			out = append(out, v)
		}
		return out
	}
	step := linearStep(hi)
	for v := lo; v <= hi*1.0001; v += step {
		out = append(out, v)
	}
	return out
}

func fill(img *image.RGBA, x, y, w, h int, c color.RGBA) {
	for yy := y; yy < y+h; yy++ {
		for xx := x; xx < x+w; xx++ {
			img.SetRGBA(xx, yy, c)
		}
	}
}

func hline(img *image.RGBA, x1, x2, y int, c color.RGBA) { fill(img, x1, y, x2-x1+1, 1, c) }
func vline(img *image.RGBA, x, y1, y2 int, c color.RGBA) { fill(img, x, y1, 1, y2-y1+1, c) }

func writePNG(path string, img image.Image) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := png.Encode(f, img); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

// fmtDur prints a duration with about 3 significant digits: 24.1us,
// 1.32ms, 0.52s ("us": the chart font has no µ; tables use fmtDurMD).
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Millisecond:
		return sig3(float64(d)/float64(time.Microsecond)) + "us"
	case d < time.Second:
		return sig3(float64(d)/float64(time.Millisecond)) + "ms"
	}
	return sig3(d.Seconds()) + "s"
}

func fmtDurMD(d time.Duration) string {
	s := fmtDur(d)
	if len(s) > 2 && s[len(s)-2:] == "us" {
		return s[:len(s)-2] + " µs"
	}
	if len(s) > 2 && s[len(s)-2:] == "ms" {
		return s[:len(s)-2] + " ms"
	}
	if s != "0" {
		return s[:len(s)-1] + " s"
	}
	return s
}

func sig3(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}
