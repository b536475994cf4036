package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"
)

// auditEvent is one line of Vault's file audit device, reduced to what the
// bench counts. Vault records the AppRole role name in the metadata of every
// token it issued, so each agent (logged in with its own role) is told apart
// by role.
type auditEvent struct {
	t        time.Time
	response bool
	role     string // role_name of the calling token, or of the token a login issued
	path     string
	op       string
	granted  time.Duration // login or renew response: the TTL granted
	failed   bool
	errMsg   string // Vault's error, when failed
	id       string // request id, the same on a request's two lines
	size     int    // bytes of the line, its newline included
}

type auditAuth struct {
	Metadata map[string]string `json:"metadata"`
	TokenTTL int64             `json:"token_ttl"`
}

// roleName is the role a token was issued for: AppRole records role_name,
// Kubernetes and jwt auth record role.
func (a *auditAuth) roleName() string {
	if r := a.Metadata["role_name"]; r != "" {
		return r
	}
	return a.Metadata["role"]
}

type auditLine struct {
	Time    string     `json:"time"`
	Type    string     `json:"type"`
	Auth    *auditAuth `json:"auth"`
	Error   string     `json:"error"`
	Request *struct {
		ID        string `json:"id"`
		Path      string `json:"path"`
		Operation string `json:"operation"`
	} `json:"request"`
	Response *struct {
		Auth *auditAuth `json:"auth"`
	} `json:"response"`
}

// readAudit parses a Vault file audit log.
func readAudit(path string) ([]auditEvent, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit log: %w", err)
	}
	defer f.Close()
	return parseAudit(f)
}

func parseAudit(r io.Reader) ([]auditEvent, error) {
	var out []auditEvent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	line := 0
	for sc.Scan() {
		line++
		var l auditLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("audit log line %d: %w", line, err)
		}
		if l.Request == nil || (l.Type != "request" && l.Type != "response") {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, l.Time)
		if err != nil {
			return nil, fmt.Errorf("audit log line %d: time %q: %w", line, l.Time, err)
		}
		ev := auditEvent{t: t, response: l.Type == "response", path: l.Request.Path, op: l.Request.Operation,
			failed: l.Error != "", errMsg: l.Error, id: l.Request.ID, size: len(sc.Bytes()) + 1}
		if l.Auth != nil {
			ev.role = l.Auth.roleName()
		}
		if l.Response != nil && l.Response.Auth != nil {
			if ev.role == "" {
				ev.role = l.Response.Auth.roleName()
			}
			ev.granted = time.Duration(l.Response.Auth.TokenTTL) * time.Second
		}
		out = append(out, ev)
	}
	return out, sc.Err()
}

func isLogin(path string) bool { return strings.HasSuffix(path, "/login") }

func isRenew(path string) bool {
	return path == "auth/token/renew-self" || path == "auth/token/renew"
}

// requestKind names what a request was for, for the per-kind breakdown.
func requestKind(path string) string {
	switch {
	case isLogin(path):
		return "login"
	case isRenew(path):
		return "renew"
	case strings.HasPrefix(path, "auth/token/lookup"):
		return "lookup"
	case strings.Contains(path, "/metadata/"):
		return "metadata"
	case strings.Contains(path, "/data/"):
		return "data"
	case strings.HasPrefix(path, "sys/internal/ui/mounts"):
		return "mount-preflight"
	case strings.HasPrefix(path, "transit/"):
		return "transit"
	}
	return "other"
}

// vaultLoad counts the requests a role made in [from, to): authenticated
// requests by their request line, logins by their response (the request
// carries no token, so no role).
type vaultLoad struct {
	total  int
	byKind map[string]int
	window time.Duration
}

func (l vaultLoad) perMinute() float64 {
	if l.window <= 0 {
		return 0
	}
	return float64(l.total) / l.window.Minutes()
}

func countRequests(evs []auditEvent, role string, from, to time.Time) vaultLoad {
	l := vaultLoad{byKind: map[string]int{}, window: to.Sub(from)}
	for _, e := range evs {
		if e.role != role || e.t.Before(from) || !e.t.Before(to) {
			continue
		}
		login := isLogin(e.path)
		if (login && e.response) || (!login && !e.response) {
			l.total++
			l.byKind[requestKind(e.path)]++
		}
	}
	return l
}

// renewalFractions returns, for each token renewal by role, the time since
// the previous grant (login or renewal) divided by the TTL that grant gave:
// the point in a token's life at which the agent renews it, as Vault saw it.
func renewalFractions(evs []auditEvent, role string) []float64 {
	var (
		out       []float64
		lastGrant time.Time
		lastTTL   time.Duration
	)
	for _, e := range evs {
		if e.role != role || !e.response || e.failed {
			continue
		}
		switch {
		case isLogin(e.path) && e.granted > 0:
			lastGrant, lastTTL = e.t, e.granted
		case isRenew(e.path) && e.granted > 0:
			if lastTTL > 0 {
				out = append(out, e.t.Sub(lastGrant).Seconds()/lastTTL.Seconds())
			}
			lastGrant, lastTTL = e.t, e.granted
		}
	}
	return out
}

// readTimes returns when role read path (request lines), in order.
func readTimes(evs []auditEvent, role, path string) []time.Time {
	var out []time.Time
	for _, e := range evs {
		if e.role == role && !e.response && e.path == path {
			out = append(out, e.t)
		}
	}
	return out
}

// intervals returns the gaps between successive times inside [from, to).
func intervals(ts []time.Time, from, to time.Time) []time.Duration {
	var out []time.Duration
	for i := 1; i < len(ts); i++ {
		if ts[i-1].Before(from) || !ts[i].Before(to) {
			continue
		}
		out = append(out, ts[i].Sub(ts[i-1]))
	}
	return out
}

// firstAfter returns the first time in sorted ts at or after t.
func firstAfter(ts []time.Time, t time.Time) (time.Time, bool) {
	i, _ := slices.BinarySearchFunc(ts, t, func(a, b time.Time) int { return a.Compare(b) })
	if i == len(ts) {
		return time.Time{}, false
	}
	return ts[i], true
}
