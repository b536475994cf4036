package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/oneline"
)

// row is one line of the results table: credlet against one anchor.
type row struct {
	measure string // what is measured
	credlet string
	anchor  string // which anchor
	value   string // the anchor's number
	ratio   string // how many times better credlet is (>1: better)
	notes   string
}

// report collects rows and failures; nothing in it is a secret.
type report struct {
	machine  string
	started  time.Time
	took     time.Duration
	rows     []row
	sections []section // tables of their own (the fleet phase), after the main one
	errs     []string
	notes    []string
}

func (r *report) add(rw row) { r.rows = append(r.rows, rw) }

// fail records a measurement that could not be made: it shows in the table
// and makes the bench exit non-zero.
func (r *report) fail(measure string, err error) {
	msg := oneline.Of(err.Error(), 400)
	r.errs = append(r.errs, measure+": "+msg)
	r.add(row{measure: measure, credlet: "not measured", value: "—", ratio: "—", notes: "FAILED: " + msg})
}

func (r *report) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "# credlet benchmark results\n\n")
	fmt.Fprintf(&b, "Produced by `make bench` on %s in %s. Every row is measured in this one run, on this machine, with the load generator on the same machine; a row marked *computed* is derived from distributions measured in this run (see its note).\n\n",
		r.started.UTC().Format("2006-01-02 15:04 UTC"), r.took.Round(time.Second))
	end := ""
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		end = "\nloadavg: " + string(bytes.TrimSpace(l)) + " (at end; the machine is shared, other work may run alongside)"
	}
	fmt.Fprintf(&b, "## Machine\n\n```\n%s%s\n```\n\n", strings.TrimSpace(r.machine), end)
	if len(r.rows) > 0 {
		fmt.Fprintf(&b, "## Results\n\nRatio: how many times better credlet is than the anchor on that row (above 1: credlet better; lower latency, memory and Vault load are better, higher throughput is better).\n\n")
		b.WriteString(r.table())
	}
	if len(r.notes) > 0 {
		b.WriteString("\n## How each row is measured\n\n")
		for _, n := range r.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	for _, s := range r.sections {
		b.WriteString("\n" + s.markdown())
	}
	if len(r.errs) > 0 {
		b.WriteString("\n## Failures\n\n")
		for _, e := range r.errs {
			b.WriteString("- " + e + "\n")
		}
	}
	b.WriteString("\n![latency distributions](latency.png)\n")
	return b.String()
}

func (r *report) table() string {
	var b strings.Builder
	b.WriteString("| measure | credlet | anchor | anchor's value | ratio | notes |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	esc := func(s string) string { return strings.ReplaceAll(s, "|", "\\|") }
	for _, rw := range r.rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", esc(rw.measure), esc(rw.credlet), esc(rw.anchor),
			esc(rw.value), esc(rw.ratio), esc(rw.notes))
	}
	return b.String()
}

// lowerBetter is the ratio anchor/credlet for a lower-is-better measure.
func lowerBetter(credlet, anchor float64) string {
	if credlet <= 0 || anchor <= 0 {
		return "—"
	}
	return fmtRatio(anchor / credlet)
}

// higherBetter is the ratio credlet/anchor for a higher-is-better measure.
func higherBetter(credlet, anchor float64) string {
	if credlet <= 0 || anchor <= 0 {
		return "—"
	}
	return fmtRatio(credlet / anchor)
}

func fmtRatio(x float64) string {
	switch {
	case x >= 100:
		return fmt.Sprintf("%.0f×", x)
	case x >= 10:
		return fmt.Sprintf("%.1f×", x)
	}
	return fmt.Sprintf("%.2f×", x)
}

func fmtMiB(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

func fmtRate(x float64) string {
	switch {
	case x >= 1000:
		return fmt.Sprintf("%s/s", groupThousands(int64(x+0.5)))
	case x >= 10:
		return fmt.Sprintf("%.0f/s", x)
	}
	return fmt.Sprintf("%.2f/s", x)
}

func groupThousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	var out []byte
	for i := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

// fracSummary is "median (min–max, n=N)" of fractions.
func fracSummary(f []float64) string {
	if len(f) == 0 {
		return "no renewal seen"
	}
	s := slices.Clone(f)
	slices.Sort(s)
	return fmt.Sprintf("%.2f (%.2f–%.2f, n=%d)", s[len(s)/2], s[0], s[len(s)-1], len(s))
}

// describeMachine is the CPU, kernel and memory this run had.
func describeMachine() string {
	var b strings.Builder
	model, mhz, flags := "", "", 0
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(sc.Text(), ":")
			if !ok {
				continue
			}
			k, v = strings.TrimSpace(k), strings.TrimSpace(v)
			switch k {
			case "model name":
				if model == "" {
					model = v
				}
			case "cpu MHz":
				if mhz == "" {
					mhz = v
				}
			case "processor":
				flags++
			}
		}
		_ = f.Close()
	}
	fmt.Fprintf(&b, "cpu:     %s, %d logical CPUs (runtime.NumCPU %d)", model, flags, runtime.NumCPU())
	if mhz != "" {
		fmt.Fprintf(&b, ", %s MHz", mhz)
	}
	b.WriteString("\n")
	if out, err := exec.Command("uname", "-srvm").Output(); err == nil {
		fmt.Fprintf(&b, "kernel:  %s\n", bytes.TrimSpace(out))
	}
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				fields := strings.Fields(v)
				if n, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					fmt.Fprintf(&b, "memory:  %.1f GiB\n", float64(n)/(1<<20))
				}
			}
		}
		_ = f.Close()
	}
	fmt.Fprintf(&b, "go:      %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	if l, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Fprintf(&b, "loadavg: %s (at start)\n", bytes.TrimSpace(l))
	}
	return b.String()
}
