package main

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/credlet/credlet/internal/oneline"
)

// fleetBench is what the fleet phase measured.
type fleetBench struct {
	storms   []stormResult
	overload *overloadResult
	model    *modelResult
	took     time.Duration
}

// benchFleet is the fleet phase, on a Vault and an apiserver of its own:
// the login storms (kubernetes, then jwt), the overload, and the fleet
// model. Every process it starts is stopped before it returns.
func (b *bench) benchFleet(ctx context.Context) {
	start := time.Now()
	b.fleet = &fleetBench{}
	defer func() {
		b.fleet.took = time.Since(start)
		b.logf("fleet: done in %s", b.fleet.took.Round(time.Second))
	}()
	dir, err := os.MkdirTemp(b.dir, "f")
	if err != nil {
		b.errs["fleet"] = err
		return
	}
	// envtest logs through controller-runtime, which prints a warning and a
	// stack when nothing set its logger within 30 s of the start (the full
	// run gets here minutes in). Its log is not needed here.
	ctrllog.SetLogger(ctrllog.Log.WithSink(ctrllog.NullLogSink{}))
	identities := max(b.o.stormAgents, b.o.modelAgents+1)
	b.logf("fleet: Vault, kube-apiserver and setup.sh (%s)", b.o.setupSh)
	fe, err := startFleetEnv(ctx, dir, b.o.setupSh, identities, b.logf)
	if err != nil {
		b.errs["fleet"] = err
		return
	}
	defer fe.close()
	for _, method := range []string{"kubernetes", "jwt"} {
		b.logf("fleet: login storm, %d agents, %s auth", b.o.stormAgents, method)
		r, err := b.loginStorm(ctx, fe, method, b.o.stormAgents, b.o.stormTimeout)
		b.fleet.storms = append(b.fleet.storms, r)
		if err != nil {
			b.errs["fleet storm "+method] = err
		}
		b.logf("  %s: all ready in %s (p50 %s, p99 %s), Vault login p50 %s p99 %s, %.0f TokenReviews, Vault CPU %.2f s",
			method, fmtDur(r.wall), fmtDur(percentile(r.ready, 0.5)), fmtDur(percentile(r.ready, 0.99)),
			fmtDur(percentile(r.logins, 0.5)), fmtDur(percentile(r.logins, 0.99)), r.reviews, r.cpu)
		if ctx.Err() != nil {
			return
		}
	}
	b.logf("fleet: overload, %d sources at %s, quota for %s", b.o.overloadSources, b.o.overloadRefresh, b.o.overloadFor)
	ov, err := b.benchOverload(ctx, fe, b.o.overloadSources, b.o.overloadRefresh, b.o.overloadFor)
	b.fleet.overload = &ov
	if err != nil {
		b.errs["fleet overload"] = err
	}
	b.logf("  reads/s before %.1f, during %.1f (quota %d), refused %d, catch-up max %s", ov.base, ov.during, ov.quota, ov.limited, fmtDur(lastDur(ov.catchUp)))
	if ctx.Err() != nil {
		return
	}
	b.logf("fleet: model, %d simulated agents × %d sets at %s for %s", b.o.modelAgents, len(fleetSets), b.o.modelRefresh, b.o.modelWindow)
	mr, err := b.benchModel(ctx, fe, b.o.modelAgents, b.o.modelRefresh, b.o.modelWindow, 0)
	b.fleet.model = &mr
	if err != nil {
		b.errs["fleet model"] = err
		return
	}
	b.logf("  %.1f req/s, Vault %.3f cores, probe p99 %s, saturation %s", float64(mr.requests)/mr.window.Seconds(),
		mr.cpu/mr.window.Seconds(), fmtDur(percentile(mr.loadProbe, 0.99)), fmtRate(mr.saturation.perSecond()))
}

func lastDur(d []time.Duration) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[len(d)-1]
}

// section is a table of its own in the results, after the main one.
type section struct {
	title  string
	header []string
	rows   [][]string
	text   string // a paragraph after the table
	notes  []string
}

func (s section) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s\n\n", s.title)
	esc := func(c string) string { return strings.ReplaceAll(c, "|", "\\|") }
	b.WriteString("| " + strings.Join(s.header, " | ") + " |\n")
	b.WriteString(strings.Repeat("| --- ", len(s.header)) + "|\n")
	for _, r := range s.rows {
		cells := make([]string, len(r))
		for i, c := range r {
			cells[i] = esc(c)
		}
		b.WriteString("| " + strings.Join(cells, " | ") + " |\n")
	}
	if s.text != "" {
		b.WriteString("\n" + s.text + "\n")
	}
	if len(s.notes) > 0 {
		b.WriteString("\n")
		for _, n := range s.notes {
			b.WriteString("- " + n + "\n")
		}
	}
	return b.String()
}

// fleetSections turns the fleet phase into its three tables (four: the
// model is measured, then projected).
func (b *bench) fleetSections() {
	f := b.fleet
	if f == nil {
		return
	}
	if err := b.errs["fleet"]; err != nil {
		b.rep.sections = append(b.rep.sections, section{title: "Fleet", header: []string{"phase", "result"},
			rows: [][]string{{"fleet", "not measured: FAILED: " + err.Error()}}})
		return
	}
	b.stormSection()
	if len(b.rep.sections) > 0 {
		s := &b.rep.sections[len(b.rep.sections)-1]
		s.text = fmt.Sprintf("The fleet phase (its own Vault and kube-apiserver, setup.sh, %d identities, both storms, the overload and the model) took %s.",
			max(b.o.stormAgents, b.o.modelAgents+1), f.took.Round(time.Second))
	}
	b.overloadSection()
	b.modelSections()
}

func (b *bench) stormSection() {
	f := b.fleet
	s := section{title: fmt.Sprintf("Fleet: login storm (%d agents at once)", b.o.stormAgents),
		header: []string{"auth", "agents", "all ready", "ready p50 / p99 / max", "Vault login p50 / p99 / max (audit; n: logins Vault answered, retries included)", "TokenReviews served", "Vault CPU", "notes"}}
	for _, r := range f.storms {
		note := fmt.Sprintf("all %d exec'd within %s; from each agent's own exec to ready p50 %s, p99 %s; logins Vault answered with an error: %d",
			r.n, fmtDurMD(r.spawn), fmtDurMD(percentile(r.fromExec, 0.5)), fmtDurMD(percentile(r.fromExec, 0.99)), r.loginErr)
		if r.errMost != "" {
			note += ", most often " + r.errMost
		}
		if r.notReady > 0 {
			note += fmt.Sprintf("; FAILED: %d not ready", r.notReady)
		}
		if err := b.errs["fleet storm "+r.method]; err != nil {
			note += "; FAILED: " + oneline.Of(err.Error(), 300)
		}
		perLogin := "—"
		if len(r.logins) > 0 {
			perLogin = fmtDurMD(time.Duration(r.cpu / float64(len(r.logins)) * float64(time.Second)))
		}
		s.rows = append(s.rows, []string{r.method, fmt.Sprint(r.n), fmtDurMD(r.wall),
			fmtDurMD(percentile(r.ready, 0.5)) + " / " + fmtDurMD(percentile(r.ready, 0.99)) + " / " + fmtDurMD(lastDur(r.ready)),
			fmtDurMD(percentile(r.logins, 0.5)) + " / " + fmtDurMD(percentile(r.logins, 0.99)) + " / " + fmtDurMD(lastDur(r.logins)) + fmt.Sprintf(" (n=%d)", len(r.logins)),
			fmt.Sprintf("%.0f", r.reviews), fmt.Sprintf("%.2f s (%s per agent)", r.cpu, perLogin), note})
	}
	s.notes = []string{
		fmt.Sprintf("Each agent is a real credlet-agent process (no CAP_IPC_LOCK, socket and files on, 3 credential sets with a Transit-encrypted field, loopback only) with its own ServiceAccount (namespace %q) and a TokenRequest token of it (audience vault) as its --token-file; Vault is configured by manifests/vault/setup.sh (Kubernetes auth with a token reviewer; jwt auth from the apiserver's issuer keys), role %s, both methods against the same Vault and apiserver, kubernetes first.", fleetPartner, fleetRole),
		fmt.Sprintf("Ready: from the storm's start (before the first exec) until the agent's socket answers /v1/health with ready:true, polled every %s per agent.", stormPoll),
		"Vault login: Vault's own time per login, the request line to the response line of its file audit device (for Kubernetes auth this includes the TokenReview call to the apiserver). TokenReviews: the apiserver's apiserver_request_total{resource=\"tokenreviews\"} before and after. Vault CPU: user+system seconds of the Vault process (/proc/PID/stat) from the storm's start until every agent was ready, divided per agent in brackets.",
	}
	b.rep.sections = append(b.rep.sections, s)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "NO"
}

func (b *bench) overloadSection() {
	r := b.fleet.overload
	if r == nil {
		return
	}
	s := section{title: "Fleet: Vault overload (rate-limit quota)", header: []string{"measure", "value", "against"}}
	normal := float64(r.sources) / r.refresh.Seconds()
	s.rows = [][]string{
		{"fleet", fmt.Sprintf("%d simulated agents × 1 set at %s", r.sources, r.refresh), fmt.Sprintf("normal rate %.0f metadata reads/s", normal)},
		{"quota (sys/quotas/rate-limit on the metadata path)", fmt.Sprintf("%d/s for %s, block_interval 1 s", r.quota, r.overload), "3/4 of the normal rate, as in TestVaultOverload"},
		{"metadata reads/s Vault saw before", fmt.Sprintf("%.1f", r.base), fmt.Sprintf("above the quota: %s", yesNo(r.base > float64(r.quota)))},
		{"metadata reads/s during the overload", fmt.Sprintf("%.1f", r.during), fmt.Sprintf("at or below the quota %d: %s", r.quota, yesNo(r.during <= float64(r.quota)))},
		{"requests refused (429)", fmt.Sprint(r.limited), "more than 0: the quota applied"},
		{"last good version served during the overload", fmt.Sprintf("%d of %d checks", r.checks-boolInt(r.badCheck != ""), r.checks), "every check (every 500 ms, every source)"},
		{"catch-up after the quota was lifted (p50 / max)", fmtDurMD(percentile(r.catchUp, 0.5)) + " / " + fmtDurMD(lastDur(r.catchUp)) + fmt.Sprintf(" (n=%d)", len(r.catchUp)),
			fmt.Sprintf("within two refresh intervals (%s): %s", 2*r.refresh, yesNo(len(r.catchUp) == r.sources && lastDur(r.catchUp) <= 2*r.refresh))},
	}
	if r.badCheck != "" {
		s.rows[5][1] += " (first failure: " + r.badCheck + ")"
	}
	if err := b.errs["fleet overload"]; err != nil {
		s.rows = append(s.rows, []string{"FAILED", oneline.Of(err.Error(), 300), "—"})
	}
	s.notes = []string{
		fmt.Sprintf("As test/reliability's TestVaultOverload at bench size, with the same code (internal/fleet): each simulated agent is the agent's own Vault source with its own client, polling its own secret on a KV v2 mount of its own; the rates are counted from Vault's file audit device (which records the refused requests too); \"during\" starts two refresh intervals after the onset (the time a fleet needs to hear the 429s). Reads per second from the onset: %v.", r.perSec),
	}
	b.rep.sections = append(b.rep.sections, s)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (b *bench) modelSections() {
	r := b.fleet.model
	if r == nil {
		return
	}
	if err := b.errs["fleet model"]; err != nil {
		b.rep.sections = append(b.rep.sections, section{title: "Fleet model", header: []string{"measure", "value"},
			rows: [][]string{{"fleet model", "not measured: FAILED: " + oneline.Of(err.Error(), 300)}}})
		return
	}
	m := r.model()
	rate := float64(r.requests) / r.window.Seconds()
	kinds := ""
	for _, k := range []string{"metadata", "data", "transit", "renew", "login", "lookup", "other"} {
		if n := r.fleetKinds[k]; n > 0 {
			kinds += fmt.Sprintf(" %s %d", k, n)
		}
	}
	satCPUPerReq := 0.0
	if n := len(r.saturation.lat); n > 0 {
		satCPUPerReq = r.satCPU / float64(n)
	}
	meas := section{title: fmt.Sprintf("Fleet model: %s simulated agents × %d sets at %s, measured", groupThousands(int64(r.agents)), r.sets, r.refresh),
		header: []string{"measure", "value", "notes"}}
	meas.rows = [][]string{
		{"Vault requests/s", fmt.Sprintf("%.1f", rate), fmt.Sprintf("%d requests in %s (audit device); the fleet's:%s; %.3f requests per set per poll", r.requests, r.window.Round(time.Second), kinds, m.perSetPoll)},
		{"Vault CPU", fmt.Sprintf("%.3f cores", r.cpu/r.window.Seconds()), fmt.Sprintf("%.2f CPU s in the window", r.cpu)},
		{"Vault CPU per request", fmtDurMD(time.Duration(m.cpuPerReq * float64(time.Second))), "CPU seconds / audited requests"},
		{"metadata read p50 / p99 under this load", fmtDurMD(percentile(r.loadProbe, 0.5)) + " / " + fmtDurMD(percentile(r.loadProbe, 0.99)),
			fmt.Sprintf("a separate prober, one read every %s (n=%d, failures %d); the same prober with Vault idle: %s / %s (n=%d)", proberInterval, len(r.loadProbe), r.probeErrs,
				fmtDurMD(percentile(r.idleProbe, 0.5)), fmtDurMD(percentile(r.idleProbe, 0.99)), len(r.idleProbe))},
		{"audit log per request", fmt.Sprintf("%.0f bytes", m.auditPerReq), fmt.Sprintf("file audit device, %s in the window (request and response lines)", fmtMiB(r.auditBytes))},
		{"token upkeep per pod", fmt.Sprintf("%.6f requests/s", m.upkeepPerPod), fmt.Sprintf("renewal at %.1f of the %s TTL the role granted", 0.8, r.granted)},
		{"saturation: metadata reads/s this Vault served at most", fmtRate(m.saturation), fmt.Sprintf("closed loop, 8 connections, the fleet stopped, audit on, load generator on the same %d cores; %s CPU per request there; p50 / p99 %s / %s",
			runtime.NumCPU(), fmtDurMD(time.Duration(satCPUPerReq*float64(time.Second))), fmtDurMD(r.saturation.p(0.5)), fmtDurMD(r.saturation.p(0.99)))},
	}
	meas.notes = []string{
		"Each simulated agent (internal/fleet) is the agent's own code, many per process: its own Vault client and connections, its own Kubernetes-auth login with its own ServiceAccount token and the lease manager keeping it, and one Vault source per set (metadata poll every refresh, ±10% jitter; data read and Transit decrypt at a new version). The agents start spread over one refresh interval, the window opens one interval after every agent served its sets.",
	}
	b.rep.sections = append(b.rep.sections, meas)

	proj := section{title: "Fleet model: one Vault for 100 / 1,000 / 10,000 pods (computed from the measurement above)",
		header: []string{"pods", "sets", "refresh", "Vault req/s", "Vault cores", "audit GB/day", fmt.Sprintf("fits this Vault (%s)", fmtRate(m.saturation))}}
	for _, refresh := range []time.Duration{10 * time.Second, time.Minute} {
		for _, pods := range []int{100, 1000, 10000} {
			q := m.reqPerSec(pods, len(fleetSets), refresh)
			proj.rows = append(proj.rows, []string{groupThousands(int64(pods)), fmt.Sprint(len(fleetSets)), refresh.String(),
				fmt.Sprintf("%.1f", q), fmt.Sprintf("%.2f", m.cores(q)), fmt.Sprintf("%.2f", m.auditGBPerDay(q)), yesNo(q <= m.saturation)})
		}
	}
	proj.text = m.verdict(len(fleetSets), runtime.NumCPU())
	proj.notes = []string{"req/s = pods × (sets × requests per set per poll / refresh + token upkeep per pod); cores = req/s × Vault CPU per request; audit GB/day = req/s × audit bytes per request × 86,400 / 10⁹; fits: req/s at or below the saturation measured here. Logins at pod start and credential rotations (a data read and a decrypt each) come on top."}
	b.rep.sections = append(b.rep.sections, proj)
}

// verdict says, from the numbers, where credlet stops fitting one Vault.
func (m fleetModel) verdict(sets, cpus int) string {
	if m.saturation <= 0 || m.cpuPerReq <= 0 {
		return "Where credlet stops fitting one Vault: not measured."
	}
	p10, p60 := m.maxPods(sets, 10*time.Second), m.maxPods(sets, time.Minute)
	q10k10, q10k60 := m.reqPerSec(10000, sets, 10*time.Second), m.reqPerSec(10000, sets, time.Minute)
	podsPerCore := 1 / m.cores(m.reqPerSec(1, sets, 10*time.Second))
	return fmt.Sprintf("**Where credlet stops fitting one Vault:** this Vault (%d cores, file audit on) saturated at %s, so it carries about %s pods × %d sets at the default 10 s refresh and %s at 60 s; "+
		"by the CPU it spent per request, one Vault core serves about %s pods at 10 s, and 10,000 pods need %.1f Vault cores at 10 s (%.1f at 60 s), %s.",
		cpus, fmtRate(m.saturation), groupThousands(int64(p10)), sets, groupThousands(int64(p60)),
		groupThousands(int64(podsPerCore)), m.cores(q10k10), m.cores(q10k60), fitPhrase(q10k10, q10k60, m.saturation))
}

func fitPhrase(q10, q60, sat float64) string {
	switch {
	case q10 <= sat:
		return "which this Vault serves at either refresh"
	case q60 <= sat:
		return "so at 10,000 pods this Vault fits only at the 60 s refresh"
	}
	return "more than this Vault serves at either refresh"
}
