package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

type options struct {
	agentBin    string
	injectorBin string
	vaultK8sBin string
	out         string
	png         string
	window      time.Duration // Vault-load window
	rotations   int
	reads       int
	startRuns   int
	admissions  int
	clients     int
	budget      time.Duration
	only        string // "", "reads", "admission" or "fleet": one phase, for a quick look
	injectorEnv string // extra K=V environment for both injectors

	// The fleet phase.
	setupSh         string
	stormAgents     int
	stormTimeout    time.Duration
	overloadSources int
	overloadRefresh time.Duration
	overloadFor     time.Duration
	modelAgents     int
	modelRefresh    time.Duration
	modelWindow     time.Duration
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == floorArg {
		os.Exit(floorMain(os.Args[2:]))
	}
	if len(os.Args) > 1 && os.Args[1] == tlsFloorArg {
		os.Exit(tlsFloorMain(os.Args[2:]))
	}
	var o options
	flag.StringVar(&o.agentBin, "agent", "bin/credlet-agent", "credlet-agent binary")
	flag.StringVar(&o.injectorBin, "injector", "bin/credlet-injector", "credlet-injector binary")
	flag.StringVar(&o.vaultK8sBin, "vault-k8s", "", "vault-k8s binary (default: vault-k8s-* in the tools folder)")
	flag.StringVar(&o.out, "out", "bench/results.md", "markdown results file")
	flag.StringVar(&o.png, "png", "bench/latency.png", "latency chart")
	flag.DurationVar(&o.window, "window", time.Minute, "how long Vault requests are counted with the agents idle")
	flag.IntVar(&o.rotations, "rotations", 20, "rotations for the propagation rows")
	flag.IntVar(&o.reads, "reads", 100_000, "measured reads per read target (the memory row's \"after N reads\")")
	flag.IntVar(&o.startRuns, "start-runs", 10, "credlet starts for start→first credential (Vault Agent: half as many, at least 3)")
	flag.IntVar(&o.admissions, "admissions", 20_000, "measured admissions per injector")
	flag.IntVar(&o.clients, "clients", 8, "concurrent keep-alive clients for reads and admissions")
	flag.StringVar(&o.injectorEnv, "injector-env", "", "extra environment for both injectors, space-separated K=V (e.g. GOMAXPROCS=1)")
	flag.StringVar(&o.only, "only", "", "run one phase only, reads, admission or fleet, for a quick look (other rows read \"not run\")")
	flag.DurationVar(&o.budget, "budget", 14*time.Minute, "hard limit for the whole run")
	flag.StringVar(&o.setupSh, "setup-sh", "manifests/vault/setup.sh", "fleet: the Vault set-up script the fleet's Vault is configured with")
	flag.IntVar(&o.stormAgents, "storm-agents", 300, "fleet: credlet-agent processes started at once in each login storm (kubernetes, jwt)")
	flag.DurationVar(&o.stormTimeout, "storm-timeout", 2*time.Minute, "fleet: how long a login storm may take until every agent is ready")
	flag.IntVar(&o.overloadSources, "overload-sources", 200, "fleet: simulated one-set agents in the overload run")
	flag.DurationVar(&o.overloadRefresh, "overload-refresh", time.Second, "fleet: their refresh interval")
	flag.DurationVar(&o.overloadFor, "overload-for", 15*time.Second, "fleet: how long the rate-limit quota holds")
	flag.IntVar(&o.modelAgents, "model-agents", 1000, "fleet: simulated agents (3 sets, own login each) in the fleet model")
	flag.DurationVar(&o.modelRefresh, "model-refresh", 10*time.Second, "fleet: their refresh interval (the agent's default)")
	flag.DurationVar(&o.modelWindow, "model-window", time.Minute, "fleet: how long the model's load is measured")
	flag.Parse()
	if o.only != "" && o.only != "reads" && o.only != "admission" && o.only != "fleet" {
		fmt.Fprintf(os.Stderr, "bench: -only %q: want reads, admission or fleet\n", o.only)
		os.Exit(2)
	}
	if o.stormAgents < 1 || o.overloadSources < 1 || o.modelAgents < 1 || o.overloadRefresh <= 0 || o.modelRefresh <= 0 || o.modelWindow <= 0 || o.overloadFor <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -storm-agents, -overload-sources and -model-agents want at least 1; -overload-refresh, -overload-for, -model-refresh and -model-window a positive duration")
		os.Exit(2)
	}
	if o.vaultK8sBin == "" {
		if dir, err := testenv.ToolsDir(); err == nil {
			// make bench-tools names it vault-k8s-<hash of tools/bench>.
			if m, _ := filepath.Glob(filepath.Join(dir, "vault-k8s-*")); len(m) > 0 {
				o.vaultK8sBin = m[len(m)-1]
			}
		}
	}
	os.Exit(run(o))
}

func run(o options) int {
	rep := &report{started: time.Now(), machine: describeMachine()}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.budget)
	defer cancel()
	// A short root: Unix socket paths must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "cb-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	b := &bench{o: o, rep: rep, dir: dir, errs: map[string]error{}}
	err = b.run(ctx)
	b.stopAll()
	if err != nil {
		rep.errs = append(rep.errs, "run stopped early: "+err.Error())
	}
	b.buildRows()
	rep.took = time.Since(rep.started)
	md := rep.markdown()
	if len(rep.rows) > 0 {
		fmt.Print(rep.table())
	}
	for _, s := range rep.sections {
		fmt.Print("\n" + s.markdown())
	}
	if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	code := 0
	if err := writePNG(o.png, renderChart(b.panels())); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		code = 1
	}
	fmt.Fprintf(os.Stderr, "bench: wrote %s and %s in %s\n", o.out, o.png, rep.took.Round(time.Second))
	for _, e := range rep.errs {
		fmt.Fprintln(os.Stderr, "bench: FAILED:", e)
		code = 1
	}
	return code
}

// bench holds the run's processes and everything measured, until the
// table is built.
type bench struct {
	o     options
	rep   *report
	dir   string
	e     *env
	vault string // vault binary
	procs []*proc
	errs  map[string]error // per section

	credlet, credletDefault, vaultAgent *agentProc
	credletLockAll                      *agentProc // with CAP_IPC_LOCK: mlockall
	lockAllIdle                         memInfo
	readyAt                             time.Time

	start     startTimes
	idle      map[string]memInfo
	idleScan  map[string]memScan
	after     map[string]memInfo
	afterScan map[string]memScan
	loadFrom  time.Time
	loadTo    time.Time
	loads     map[string]vaultLoad
	renewals  map[string][]float64
	intervals map[string][]time.Duration
	prop      *propagation
	overheads map[string][]time.Duration
	defaults  map[string][]time.Duration
	reads     map[string]loadResult // at o.clients clients
	reads1    map[string]loadResult // one client: unloaded latency
	// floor and pinned: credlet next to a do-nothing server, unpinned and
	// with the server on one CPU and the load generator on the other.
	floor, pinned map[string]loadResult
	admission     map[string]admissionBench
	fleet         *fleetBench
	runEndedAt    time.Time
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %6.1fs  %s\n", time.Since(b.rep.started).Seconds(), fmt.Sprintf(format, args...))
}

func (b *bench) track(p *agentProc) *agentProc {
	b.procs = append(b.procs, p.proc)
	return p
}

func (b *bench) stopAll() {
	for _, p := range b.procs {
		_ = p.stop(5 * time.Second)
	}
	b.procs = nil
	if b.e != nil {
		b.e.close()
	}
}

// run runs the phases in an order that keeps them from disturbing each
// other: start-time runs first, then the admission benchmark (before any
// agent runs), then the long-lived agents idle (memory, Vault load), then
// rotations, then the audit log is read and the audit device
// disabled, and last the read-latency runs (whose proxied and direct reads
// would otherwise flood Vault's audit log and the load window).
func (b *bench) run(ctx context.Context) error {
	var err error
	if b.vault, err = testenv.Binary(testenv.BinVault); err != nil {
		return err
	}
	for _, bin := range []string{b.o.agentBin} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w (run make build)", bin, err)
		}
	}
	b.logf("starting Vault (%s)", b.vault)
	if b.e, err = newEnv(ctx, b.dir); err != nil {
		return fmt.Errorf("vault: %w", err)
	}
	switch b.o.only {
	case "fleet":
		b.e.close() // the fleet phase has a Vault of its own
		b.benchFleet(ctx)
		return nil
	case "admission":
		b.benchAdmission(ctx)
		return nil
	case "reads":
		if err := b.startAgents(); err != nil {
			return err
		}
		_ = b.credletLockAll.stop(5 * time.Second) // as measureIdle does: one credlet at 1 s
		if err := b.e.vault.DisableFileAudit(b.e.auditPath); err != nil {
			return err
		}
		b.benchReads(ctx)
		return nil
	}

	b.logf("start → first credential: %d credlet starts, %d Vault Agent starts", b.o.startRuns, max(3, b.o.startRuns/2))
	if b.start, err = measureStart(b.e, b.o.agentBin, b.vault, b.o.startRuns); err != nil {
		b.errs["start"] = err
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	// Admission before the agents start: nothing else runs but an idle
	// Vault, so the injectors' latency tails are theirs.
	b.logf("admission: %d admissions per injector and run", b.o.admissions)
	b.benchAdmission(ctx)
	if err := ctx.Err(); err != nil {
		return err
	}

	b.logf("starting the long-lived agents")
	if err := b.startAgents(); err != nil {
		return err
	}
	b.measureIdle()

	b.logf("counting Vault requests for %s", b.o.window)
	b.loadFrom = time.Now()
	select {
	case <-time.After(b.o.window):
	case <-ctx.Done():
		return ctx.Err()
	}
	b.loadTo = time.Now()

	b.logf("rotation propagation: %d rotations", b.o.rotations)
	if b.prop, err = runRotations(ctx, b.e, b.credlet, b.vaultAgent, b.o.rotations); err != nil {
		b.errs["propagation"] = err
	}
	b.analyseAudit()
	if err := b.e.vault.DisableFileAudit(b.e.auditPath); err != nil {
		return err
	}

	b.logf("read latency: %d reads per target at %d clients", b.o.reads, b.o.clients)
	b.benchReads(ctx)
	b.measureAfter()
	for _, a := range []*agentProc{b.credlet, b.credletDefault, b.vaultAgent} {
		if a.exited() {
			b.errs["agents"] = errors.Join(b.errs["agents"], fmt.Errorf("%s exited during the run: %v: %s", a.name, a.err, a.logTail(400)))
		}
	}
	b.runEndedAt = time.Now()

	// Last, on a Vault and an apiserver of its own, with the agents above
	// stopped: the fleet phase.
	for _, p := range b.procs {
		_ = p.stop(5 * time.Second)
	}
	b.e.close()
	b.benchFleet(ctx)
	return nil
}

func (b *bench) startAgents() error {
	var err error
	if b.credlet, err = b.e.startCredlet(b.o.agentBin, roleCredlet, time.Second, false); err != nil {
		return err
	}
	b.track(b.credlet)
	if b.credletDefault, err = b.e.startCredlet(b.o.agentBin, roleCredletDefault, 0, false); err != nil {
		return err
	}
	b.track(b.credletDefault)
	if b.credletLockAll, err = b.e.startCredlet(b.o.agentBin, roleCredletLockAll, time.Second, true); err != nil {
		return err
	}
	b.track(b.credletLockAll)
	if b.vaultAgent, err = b.e.startVaultAgent(b.vault, roleVaultAgent, time.Second); err != nil {
		return err
	}
	b.track(b.vaultAgent)
	for _, a := range []*agentProc{b.credlet, b.credletDefault, b.credletLockAll, b.vaultAgent} {
		if err := a.waitReady(b.e.sets, 60*time.Second); err != nil {
			return err
		}
	}
	b.readyAt = time.Now()
	return nil
}

// measureIdle takes RSS, then scans memory, 6 s after the agents started
// (the point DESIGN.md's Vault Agent count was taken at).
func (b *bench) measureIdle() {
	time.Sleep(time.Until(b.vaultAgent.started.Add(6 * time.Second)))
	b.idle, b.idleScan = b.memory()
	m, err := readMem(b.credletLockAll.pid())
	if err != nil {
		b.errs["memory"] = errors.Join(b.errs["memory"], err)
	}
	b.lockAllIdle = m
	// It has served its purpose; the rest of the run has one credlet at 1 s.
	_ = b.credletLockAll.stop(5 * time.Second)
}

func (b *bench) measureAfter() {
	b.after, b.afterScan = b.memory()
}

func (b *bench) memory() (map[string]memInfo, map[string]memScan) {
	mem, scans := map[string]memInfo{}, map[string]memScan{}
	agents := map[string]*agentProc{"credlet": b.credlet, "vault-agent": b.vaultAgent}
	for k, a := range agents {
		m, err := readMem(a.pid())
		if err != nil {
			b.errs["memory"] = errors.Join(b.errs["memory"], err)
			continue
		}
		mem[k] = m
	}
	needles := b.e.allValues()
	for k, a := range agents {
		s, err := scanMemory(a.pid(), needles, []string{a.files})
		if err != nil {
			b.errs["copies"] = errors.Join(b.errs["copies"], fmt.Errorf("%s: %w", k, err))
			continue
		}
		scans[k] = s
	}
	return mem, scans
}

func (b *bench) benchAdmission(ctx context.Context) {
	b.admission = map[string]admissionBench{}
	ca, err := newCA()
	if err != nil {
		b.errs["admission"] = err
		return
	}
	review := admissionReview()
	type target struct {
		key, bin string
		start    func(bin, dir string, ca *testCA, vaultAddr string, extraEnv []string) (*injector, error)
	}
	for _, t := range []target{
		{"credlet-injector", b.o.injectorBin, startCredletInjector},
		{"vault-k8s", b.o.vaultK8sBin, startVaultK8s},
		{"floor", os.Args[0], startTLSFloor},
	} {
		if _, err := os.Stat(t.bin); err != nil {
			b.errs["admission "+t.key] = fmt.Errorf("%s: %w", t.bin, err)
			continue
		}
		dir, err := os.MkdirTemp(b.dir, "i")
		if err != nil {
			b.errs["admission "+t.key] = err
			continue
		}
		inj, err := t.start(t.bin, dir, ca, b.e.vault.Addr, strings.Fields(b.o.injectorEnv))
		if err != nil {
			b.errs["admission "+t.key] = err
			continue
		}
		res, err := benchInjector(ctx, inj, t.bin, ca, review, b.o.clients, b.o.admissions)
		_ = inj.stop(5 * time.Second)
		for _, l := range []loadResult{res.load, res.distinct, res.pinned, res.pinnedDistinct} {
			b.logf("  %s: %d admissions, p50 %s, p99 %s, %s, %d errors %s", l.name, len(l.lat),
				fmtDur(l.p(0.5)), fmtDur(l.p(0.99)), fmtRate(l.perSecond()), l.errors, l.firstErr)
		}
		if err != nil {
			b.errs["admission "+t.key] = err
			continue
		}
		b.admission[t.key] = res
	}
}

func (b *bench) benchReads(ctx context.Context) {
	b.reads = map[string]loadResult{}
	_, value := b.e.current()
	set := b.e.sets[0]
	specs := []loadSpec{
		{name: "credlet", dial: unixDialer(b.credlet.socket), request: getRequest("/v1/credentials/" + set.name)},
		{name: "vault-agent", dial: tcpDialer(b.vaultAgent.listen), request: getRequest("/v1/" + set.dataPath())},
		{name: "direct", dial: tcpDialer(b.e.vault.HostPort()), request: getRequest("/v1/"+set.dataPath(), "X-Vault-Token: "+b.e.vault.RootToken)},
	}
	for _, s := range specs {
		s.clients, s.warmup, s.total, s.maxTime = b.o.clients, 250, b.o.reads, 150*time.Second
		s.check = statusIs(200, value)
		r := runLoad(ctx, s)
		b.reads[s.name] = r
		b.logf("  %s: %d reads at %d clients, p50 %s, p99 %s, %s, %d errors", s.name, len(r.lat), s.clients,
			fmtDur(r.p(0.5)), fmtDur(r.p(0.99)), fmtRate(r.perSecond()), r.errors)
	}
	b.reads1 = map[string]loadResult{}
	for _, s := range specs {
		s.clients, s.warmup, s.total, s.maxTime = 1, 500, max(1000, b.o.reads/10), 30*time.Second
		s.check = statusIs(200, value)
		r := runLoad(ctx, s)
		b.reads1[s.name] = r
		b.logf("  %s: %d reads at 1 client, p50 %s, p99 %s, %d errors", s.name, len(r.lat),
			fmtDur(r.p(0.5)), fmtDur(r.p(0.99)), r.errors)
	}
	if err := b.benchFloor(ctx, specs[0], value); err != nil {
		b.errs["floor"] = err
	}
}

// benchFloor reads from credlet and from the floor (floor.go), first as the
// other read rows do, then with each server pinned to CPU 0 and this
// process to CPU 1, so the load generator no longer competes with the
// server for a core.
func (b *bench) benchFloor(ctx context.Context, credlet loadSpec, value []byte) error {
	c := newConn(credlet.dial)
	_, body, err := c.do(credlet.request)
	c.close()
	if err != nil {
		return err
	}
	fp, sock, err := startFloor(b.dir, len(body))
	if err != nil {
		return err
	}
	defer func() { _ = fp.stop(2 * time.Second) }()
	floor := loadSpec{name: "floor", dial: unixDialer(sock), request: credlet.request, check: statusIs(200)}
	credlet.check = statusIs(200, value)
	b.floor, b.pinned = map[string]loadResult{}, map[string]loadResult{}
	run := func(into map[string]loadResult, key string, s loadSpec, how string) {
		s.clients, s.warmup, s.total, s.maxTime = b.o.clients, 250, b.o.reads, 60*time.Second
		r := runLoad(ctx, s)
		into[key] = r
		b.logf("  %s%s: %d reads at %d clients, p50 %s, p99 %s, %s, %d errors", key, how, len(r.lat), s.clients,
			fmtDur(r.p(0.5)), fmtDur(r.p(0.99)), fmtRate(r.perSecond()), r.errors)
	}
	run(b.floor, "floor", floor, "")
	for _, t := range []struct {
		key  string
		pid  int
		spec loadSpec
	}{{"credlet", b.credlet.pid(), credlet}, {"floor", fp.pid(), floor}} {
		if err := pinned(t.pid, func() { run(b.pinned, t.key, t.spec, " pinned") }); err != nil {
			return err
		}
	}
	return nil
}
