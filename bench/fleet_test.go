package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An excerpt of kube-apiserver 1.34's /metrics: TokenReviews under two
// codes, another resource, a histogram whose name starts the same, and
// comments.
const apiserverMetrics = `# HELP apiserver_request_total [STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.
# TYPE apiserver_request_total counter
apiserver_request_total{code="201",component="apiserver",dry_run="",group="authentication.k8s.io",resource="tokenreviews",scope="cluster",subresource="",verb="POST",version="v1"} 298
apiserver_request_total{code="401",component="apiserver",dry_run="",group="authentication.k8s.io",resource="tokenreviews",scope="cluster",subresource="",verb="POST",version="v1"} 2
apiserver_request_total{code="201",component="apiserver",dry_run="",group="",resource="serviceaccounts",scope="resource",subresource="token",verb="POST",version="v1"} 1001
apiserver_request_total_other{resource="tokenreviews"} 7
apiserver_request_duration_seconds_count{resource="tokenreviews",verb="POST"} 300
`

func TestSumCounter(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		match   map[string]string
		want    float64
		wantErr bool
	}{
		{"tokenreviews, every code", apiserverMetrics, map[string]string{"resource": "tokenreviews"}, 300, false},
		{"one code", apiserverMetrics, map[string]string{"resource": "tokenreviews", "code": "401"}, 2, false},
		{"token requests", apiserverMetrics, map[string]string{"resource": "serviceaccounts", "subresource": "token"}, 1001, false},
		{"none yet", apiserverMetrics, map[string]string{"resource": "pods"}, 0, false},
		{"no labels", "apiserver_request_total 5\n", nil, 5, false},
		{"bad value", `apiserver_request_total{resource="tokenreviews"} x` + "\n", map[string]string{"resource": "tokenreviews"}, 0, true},
		{"unterminated labels", `apiserver_request_total{resource="tokenreviews" 1` + "\n", map[string]string{"resource": "tokenreviews"}, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := sumCounter([]byte(tc.text), "apiserver_request_total", tc.match)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("sumCounter = %v, %v; want %v (error %t)", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseStatCPU(t *testing.T) {
	// pid (comm) state ppid … utime=1234 stime=566 (fields 14, 15); the
	// name holds a space and a parenthesis.
	stat := "4242 (vault (x) y) S 1 4242 4242 0 -1 4194560 9000 0 0 0 1234 566 0 0 20 0 40 0 100 2000000 5000 18446744073709551615\n"
	got, err := parseStatCPU([]byte(stat))
	if err != nil || got != 18.0 {
		t.Fatalf("parseStatCPU = %v, %v; want 18 s (1800 ticks)", got, err)
	}
	if _, err := parseStatCPU([]byte("4242 (vault) S 1 2")); err == nil {
		t.Error("a short stat line parsed")
	}
	if _, err := parseStatCPU([]byte("no name here")); err == nil {
		t.Error("a line without a command name parsed")
	}
	if own, err := cpuSeconds(os.Getpid()); err != nil || own < 0 {
		t.Errorf("own CPU seconds = %v, %v", own, err)
	}
}

// Two Kubernetes logins (one refused) and a jwt login, interleaved, as
// Vault's file audit device writes them.
const loginAudit = `{"time":"2026-01-01T10:00:00.000Z","type":"request","request":{"id":"a","path":"auth/kubernetes/login","operation":"update"}}
{"time":"2026-01-01T10:00:00.001Z","type":"request","request":{"id":"b","path":"auth/kubernetes/login","operation":"update"}}
{"time":"2026-01-01T10:00:00.002Z","type":"request","request":{"id":"c","path":"auth/jwt/login","operation":"update"}}
{"time":"2026-01-01T10:00:00.031Z","type":"response","request":{"id":"b","path":"auth/kubernetes/login","operation":"update"},"response":{"auth":{"metadata":{"role":"credlet-partner"},"token_ttl":3600}}}
{"time":"2026-01-01T10:00:00.050Z","type":"response","error":"permission denied","request":{"id":"a","path":"auth/kubernetes/login","operation":"update"}}
{"time":"2026-01-01T10:00:00.060Z","type":"response","error":"context canceled","request":{"id":"e","path":"auth/kubernetes/login","operation":"update"}}
{"time":"2026-01-01T10:00:00.061Z","type":"response","error":"permission denied","request":{"id":"f","path":"auth/kubernetes/login","operation":"update"}}
{"time":"2026-01-01T10:00:00.007Z","type":"response","request":{"id":"c","path":"auth/jwt/login","operation":"update"}}
{"time":"2026-01-01T10:00:01.000Z","type":"request","auth":{"metadata":{"role":"credlet-partner"}},"request":{"id":"d","path":"secret/metadata/partners/fleet/set1","operation":"read"}}
`

func TestLoginLatencies(t *testing.T) {
	evs, err := parseAudit(strings.NewReader(loginAudit))
	if err != nil {
		t.Fatal(err)
	}
	lat, failed, most := loginLatencies(evs, "auth/kubernetes/login")
	if len(lat) != 2 || lat[0] != 30*time.Millisecond || lat[1] != 50*time.Millisecond || failed != 3 || most != `"permission denied" ×2, "context canceled" ×1` {
		t.Errorf("kubernetes logins = %v, failed %d (%s); want [30ms 50ms] (sorted; a response without its request has no latency), 3 failed, most often permission denied", lat, failed, most)
	}
	if lat, _, most := loginLatencies(evs, "auth/jwt/login"); len(lat) != 1 || lat[0] != 5*time.Millisecond || most != "" {
		t.Errorf("jwt logins = %v, want [5ms]", lat)
	}
	if evs[3].role != "credlet-partner" || evs[3].granted != time.Hour || evs[8].role != "credlet-partner" {
		t.Errorf("roles %q %q, granted %v: want Kubernetes auth's role metadata and the 1 h TTL", evs[3].role, evs[8].role, evs[3].granted)
	}
}

func TestReadAuditRange(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.log")
	lines := strings.SplitAfter(loginAudit, "\n")
	// A partial last line, as when Vault is caught mid-write.
	if err := os.WriteFile(path, []byte(loginAudit+`{"time":"2026-01-01T10:00:02`), 0o600); err != nil {
		t.Fatal(err)
	}
	start3 := int64(len(lines[0]) + len(lines[1]) + len(lines[2]))
	tests := []struct {
		name     string
		from, to int64
		wantIDs  string
	}{
		{"whole file, partial tail skipped", 0, -1, "abcbaefcd"},
		{"from a line start", start3, -1, "baefcd"},
		{"from inside a line: that line is skipped", start3 + 5, -1, "aefcd"},
		{"up to inside a line: that line is skipped", 0, start3 + 5, "abc"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := readAuditRange(path, tc.from, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			ids := ""
			for _, e := range evs {
				ids += e.id
			}
			if ids != tc.wantIDs {
				t.Errorf("ids %q, want %q", ids, tc.wantIDs)
			}
		})
	}
}

func TestFleetModel(t *testing.T) {
	// 1,000 agents × 3 sets at 10 s for 60 s: 18,000 metadata reads, 60 of
	// them by the prober; 18,060 requests audited in all; 9.03 CPU s;
	// 1 h tokens, none renewed in the window.
	r := modelResult{agents: 1000, sets: 3, refresh: 10 * time.Second, window: time.Minute,
		requests: 18_060, fleetKinds: map[string]int{"metadata": 18_000}, auditBytes: 18_060 * 4000,
		cpu: 9.03, granted: time.Hour, saturation: loadResult{lat: make([]time.Duration, 6000), elapsed: 5 * time.Second}}
	m := r.model()
	near := func(got, want float64) bool { return got > want*0.9999 && got < want*1.0001 }
	if !near(m.perSetPoll, 1) || !near(m.cpuPerReq, 0.0005) || !near(m.auditPerReq, 4000) || !near(m.saturation, 1200) {
		t.Fatalf("model %+v: want 1 request per set per poll, 0.5 ms CPU and 4,000 audit bytes per request, 1,200/s saturation", m)
	}
	upkeep := 1 / (0.8 * 3600)
	if !near(m.upkeepPerPod, upkeep) {
		t.Errorf("upkeep %v, want a renewal every 0.8 h (%v/s)", m.upkeepPerPod, upkeep)
	}
	q := m.reqPerSec(10_000, 3, 10*time.Second)
	if want := 10_000 * (0.3 + upkeep); !near(q, want) {
		t.Errorf("10,000 pods at 10 s: %v req/s, want %v", q, want)
	}
	if q60 := m.reqPerSec(10_000, 3, time.Minute); !near(q60, 10_000*(0.05+upkeep)) {
		t.Errorf("10,000 pods at 60 s: %v req/s", q60)
	}
	if c := m.cores(3000); !near(c, 1.5) {
		t.Errorf("cores(3,000/s) = %v, want 1.5", c)
	}
	if g := m.auditGBPerDay(1000); !near(g, 345.6) {
		t.Errorf("audit at 1,000/s = %v GB/day, want 345.6", g)
	}
	if p := m.maxPods(3, 10*time.Second); p != 3995 {
		t.Errorf("maxPods at 10 s = %d, want 3,995 (1,200/s over 0.3003/s a pod)", p)
	}
	v := m.verdict(3, 2)
	for _, want := range []string{"saturated at 1,200/s", "3,995 pods × 3 sets at the default 10 s refresh", "23,834 at 60 s", "one Vault core serves about 6,658 pods", "1.5 Vault cores at 10 s", "(0.3 at 60 s)", "fits only at the 60 s refresh"} {
		if !strings.Contains(v, want) {
			t.Errorf("verdict lacks %q:\n%s", want, v)
		}
	}
	m.saturation = 200
	if v := m.verdict(3, 2); !strings.Contains(v, "more than this Vault serves at either refresh") {
		t.Errorf("verdict at a 200/s saturation: %s", v)
	}
	if v := (fleetModel{}).verdict(3, 2); !strings.Contains(v, "not measured") {
		t.Errorf("verdict without measurements: %s", v)
	}
	// Renewals seen in the window count when they are more than the TTL gives.
	r.fleetKinds["renew"] = 1000
	if m := r.model(); !near(m.upkeepPerPod, 1.0/60) {
		t.Errorf("upkeep with 1,000 renewals in 60 s = %v, want 1/60", m.upkeepPerPod)
	}
}
