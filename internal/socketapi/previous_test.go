package socketapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestPreviousVersion: ?version=previous serves the store's rollback
// pointer (the version before the current one) with its own ETag, 404
// not_found while the agent holds none, and an audit record per read.
func TestPreviousVersion(t *testing.T) {
	e := startEnv(t, nil)
	c := unixClient(e.path)
	get := func(target string) (answer, credBody) {
		t.Helper()
		a := do(t, c, "GET", target, nil, nil)
		var b credBody
		if a.status == http.StatusOK {
			if err := json.Unmarshal([]byte(a.body), &b); err != nil {
				t.Fatalf("%s: %v", target, err)
			}
		}
		return a, b
	}
	const prev = "/v1/credentials/acme?version=previous"

	for _, tc := range []struct {
		name, target string
		status       int
		code         string
	}{
		{"nothing committed yet", prev, 404, "not_found"},
		{"unknown set", "/v1/credentials/nosuch?version=previous", 404, "not_found"},
		{"another version", "/v1/credentials/acme?version=3", 400, "bad_request"},
		{"version twice", "/v1/credentials/acme?version=previous&version=previous", 400, "bad_request"},
		{"with a long poll", "/v1/credentials/acme?version=previous&wait=1", 400, "bad_request"},
		{"on the list", "/v1/credentials?version=previous", 400, "bad_request"},
	} {
		a, _ := get(tc.target)
		if a.status != tc.status || errCode(t, a.body) != tc.code {
			t.Errorf("%s: %s → %d %s; want %d %s", tc.name, tc.target, a.status, a.body, tc.status, tc.code)
		}
	}

	commitV(t, e.st, "acme", 1)
	if a, _ := get(prev); a.status != 404 || errCode(t, a.body) != "not_found" || !strings.Contains(a.body, "no previous version") {
		t.Fatalf("one version held: %d %s; want 404 not_found naming the missing previous version", a.status, a.body)
	}

	commitV(t, e.st, "acme", 2)
	a, b := get(prev)
	if a.status != 200 || b.Version != 1 || b.Fields["api_key"] != "FAKE-api-key-v1" || a.header.Get("ETag") != `"1"` {
		t.Fatalf("previous after v2: %d version %d ETag %s", a.status, b.Version, a.header.Get("ETag"))
	}
	if _, cur := get("/v1/credentials/acme"); cur.Version != 2 || cur.Fields["api_key"] != "FAKE-api-key-v2" {
		t.Fatalf("current after v2: version %d", cur.Version)
	}
	if h := do(t, c, "HEAD", prev, nil, nil); h.status != 200 || h.header.Get("ETag") != `"1"` || h.body != "" {
		t.Fatalf("HEAD previous: %d ETag %s body %q", h.status, h.header.Get("ETag"), h.body)
	}
	if nm := do(t, c, "GET", prev, map[string]string{"If-None-Match": `"1"`}, nil); nm.status != http.StatusNotModified {
		t.Fatalf("If-None-Match of the previous version: %d", nm.status)
	}

	commitV(t, e.st, "acme", 3)
	if _, b := get(prev); b.Version != 2 || b.Fields["api_secret"] != "FAKE-api-secret\"quoted\"\n-v2" {
		t.Fatalf("previous after v3: version %d", b.Version)
	}

	// Audit: one record per GET of a previous version (two above), none for
	// HEAD or a 304, and none for the refused requests.
	e.stop(t)
	var prevReads []int
	for line := range strings.Lines(e.audit.String()) {
		var r struct {
			Event   string `json:"event"`
			Version int    `json:"version"`
			Detail  string `json:"detail"`
			Peer    *struct {
				UID uint32 `json:"uid"`
			} `json:"peer"`
		}
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		if r.Event == "read" && r.Detail == "previous version" {
			if r.Peer == nil {
				t.Errorf("previous read without its peer: %s", line)
			}
			prevReads = append(prevReads, r.Version)
		}
	}
	if len(prevReads) != 2 || prevReads[0] != 1 || prevReads[1] != 2 {
		t.Fatalf("audited previous reads of versions %v; want [1 2]:\n%s", prevReads, e.audit.String())
	}
}
