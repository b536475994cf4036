package socketapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/credlet/credlet/internal/audit"
	"github.com/credlet/credlet/internal/securemem"
	"github.com/credlet/credlet/internal/store"
)

// response is an answer ready to be written.
type response struct {
	status int
	etag   int  // > 0: ETag "<etag>"
	json   bool // Content-Type: application/json
	allow  bool // Allow: GET, HEAD (405)
	close  bool // Connection: close
	body   []byte
	length int        // Content-Length when body is nil (HEAD of a credential)
	set    *store.Set // body is this set's rendering: released after the write
}

var errWaitTimeout = errors.New("long poll timed out")

// handle answers one request. ctx ends when the server shuts down or the
// client goes away during a long poll.
func (s *Server) handle(ctx context.Context, req *httpRequest, p peer) response {
	if !p.allowed { // turned away at accept; never reached
		return s.deny(req, p)
	}
	if req.method != http.MethodGet && req.method != http.MethodHead {
		r := s.fail(&apiError{http.StatusMethodNotAllowed, "method_not_allowed",
			fmt.Sprintf("method %s: only GET and HEAD are allowed", clip(req.method))})
		r.allow = true
		return r
	}
	if req.origin {
		return s.fail(&apiError{http.StatusForbidden, "forbidden",
			"requests with an Origin or Referer header are refused: the socket API is not for browsers"})
	}
	if req.hasBody {
		r := s.fail(badRequest("%s requests take no body", req.method))
		r.close = true // the body was not read: the connection cannot carry on
		return r
	}
	pr, aerr := parseRequest(req.path, req.rawQuery, s.maxWait)
	if aerr != nil {
		return s.fail(aerr)
	}
	switch pr.route {
	case routeGet:
		return s.get(ctx, req, pr, p)
	case routeList:
		return s.list()
	default:
		return s.health()
	}
}

// deny answers a peer outside the allow lists: 403, and the connection
// closed after the answer. The caller writes the audit record.
func (s *Server) deny(req *httpRequest, p peer) response {
	r := s.fail(&apiError{http.StatusForbidden, "forbidden",
		fmt.Sprintf("uid %d gid %d may not read credentials from this agent (see --allow-uid, --allow-gid)", p.UID, p.GID)})
	r.close = true
	return r
}

func (s *Server) get(ctx context.Context, req *httpRequest, pr request, p peer) response {
	var (
		set  *store.Set
		aerr *apiError
	)
	if pr.previous {
		set, aerr = s.acquirePrevious(pr.name)
	} else {
		set, aerr = s.acquire(ctx, pr)
	}
	if aerr != nil {
		return s.fail(aerr)
	}
	if set == nil { // long poll timed out: nothing new
		return s.notModified(pr.name)
	}
	if !pr.wait && etagMatches(req.ifNoneMatch, set.Version()) {
		set.Release()
		return s.notModified(pr.name)
	}
	body, err := set.Rendered(renderSet)
	if err != nil {
		set.Release()
		return s.fail(&apiError{http.StatusServiceUnavailable, "not_ready", "encoding the answer failed: " + err.Error()})
	}
	r := response{status: http.StatusOK, etag: set.Version(), json: true, length: len(body)}
	if req.method == http.MethodHead {
		set.Release()
		return r
	}
	if pr.previous {
		// A fall-back to the rollback pointer is rare and worth seeing:
		// every one is its own record, not folded into the read summary.
		s.audit.Log(audit.Record{Event: audit.Read, Credential: set.Name(), Version: set.Version(), Peer: &p.Peer,
			Result: "ok", Detail: "previous version"})
	} else {
		s.audit.ObserveRead(p.Peer, set.Name(), set.Version())
	}
	r.body, r.set = body, set // the set is released once the body is written
	return r
}

// acquirePrevious returns the version before the current one (the store's
// rollback pointer): 404 when the agent holds none, as before its first
// rotation since it started.
func (s *Server) acquirePrevious(name string) (*store.Set, *apiError) {
	set, err := s.st.AcquirePrevious(name)
	if errors.Is(err, store.ErrNotReady) {
		return nil, &apiError{http.StatusNotFound, "not_found",
			fmt.Sprintf("credential set %q has no previous version in this agent (one is kept once a new version replaces the first)", name)}
	}
	if err != nil {
		return nil, storeError(name, err)
	}
	return set, nil
}

// acquire returns the set to answer with: the current version, or for a long
// poll the first version other than pr.version. (nil, nil) means the long
// poll timed out.
func (s *Server) acquire(ctx context.Context, pr request) (*store.Set, *apiError) {
	set, err := s.st.Acquire(pr.name)
	if err == nil && (!pr.wait || set.Version() != pr.version) {
		return set, nil
	}
	if err != nil && (!pr.wait || !errors.Is(err, store.ErrNotReady)) {
		return nil, storeError(pr.name, err)
	}
	if set != nil {
		set.Release()
	}
	if s.polls.Add(1) > int64(s.maxPolls) {
		s.polls.Add(-1)
		return nil, &apiError{http.StatusServiceUnavailable, "busy",
			fmt.Sprintf("too many long polls waiting (at most %d); retry later", s.maxPolls)}
	}
	defer s.polls.Add(-1)
	wctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	t := s.clock.NewTimer(pr.timeout)
	defer t.Stop()
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-t.C():
			cancel(errWaitTimeout)
		case <-done:
		}
	}()
	set, err = s.st.Wait(wctx, pr.name, pr.version)
	switch {
	case err == nil:
		return set, nil
	case errors.Is(context.Cause(wctx), errWaitTimeout):
		return nil, nil
	case ctx.Err() != nil:
		return nil, &apiError{http.StatusServiceUnavailable, "not_ready", "agent shutting down"}
	default:
		return nil, storeError(pr.name, err)
	}
}

func storeError(name string, err error) *apiError {
	switch {
	case errors.Is(err, store.ErrUnknown):
		return &apiError{http.StatusNotFound, "not_found", fmt.Sprintf("no credential set %q in this agent", name)}
	case errors.Is(err, store.ErrNotReady):
		return &apiError{http.StatusServiceUnavailable, "not_ready", fmt.Sprintf("credential set %q has not been fetched yet", name)}
	default:
		return &apiError{http.StatusServiceUnavailable, "not_ready", err.Error()}
	}
}

// etagMatches reports whether an If-None-Match value names the version.
func etagMatches(inm string, version int) bool {
	if inm == "" {
		return false
	}
	for tag := range strings.SplitSeq(inm, ",") {
		tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
		if tag == "*" || (len(tag) > 2 && tag[0] == '"' && tag[len(tag)-1] == '"' && tag[1:len(tag)-1] == strconv.Itoa(version)) {
			return true
		}
	}
	return false
}

// notModified answers 304 with the current version's ETag, if any.
func (s *Server) notModified(name string) response {
	r := response{status: http.StatusNotModified}
	if set, err := s.st.Acquire(name); err == nil {
		r.etag = set.Version()
		set.Release()
	}
	return r
}

// renderSet renders a version's answer, {"name","version","fields",
// "fetched_at","expires_at"?}, from the set's locked views into locked
// memory. It runs once per version (store.Set.Rendered): every GET of that
// version is then one writev straight from this buffer.
func renderSet(set *store.Set) (*securemem.Buffer, error) {
	var preArr [160]byte
	pre := append(preArr[:0], `{"name":"`...)
	pre = append(pre, set.Name()...) // a validated name: nothing to escape
	pre = append(pre, `","version":`...)
	pre = strconv.AppendInt(pre, int64(set.Version()), 10)
	pre = append(pre, `,"fields":`...)
	var sufArr [128]byte
	suf := append(sufArr[:0], `,"fetched_at":"`...)
	suf = set.FetchedAt().UTC().AppendFormat(suf, time.RFC3339Nano)
	suf = append(suf, '"')
	if exp := set.ExpiresAt(); !exp.IsZero() {
		suf = append(suf, `,"expires_at":"`...)
		suf = exp.UTC().AppendFormat(suf, time.RFC3339Nano)
		suf = append(suf, '"')
	}
	suf = append(suf, "}\n"...)
	n := len(pre) + set.FieldsJSONLen() + len(suf)
	buf, err := securemem.New(n)
	if err != nil {
		return nil, err
	}
	w := buf.Writer(n)
	_, _ = w.Write(pre)
	_ = set.WriteFieldsJSON(w)
	_, _ = w.Write(suf)
	if w.Err() != nil || len(w.Bytes()) != n {
		buf.Free()
		return nil, fmt.Errorf("answer is not the %d bytes computed: %v", n, w.Err())
	}
	return buf, nil
}

type listItem struct {
	Name      string     `json:"name"`
	Version   int        `json:"version"`
	FetchedAt *time.Time `json:"fetched_at,omitempty"`
}

func (s *Server) list() response {
	out := struct {
		Credentials []listItem `json:"credentials"`
	}{Credentials: []listItem{}}
	for _, st := range s.st.Status() {
		it := listItem{Name: st.Name, Version: st.Version}
		if st.Version != 0 {
			at := st.FetchedAt.UTC()
			it.FetchedAt = &at
		}
		out.Credentials = append(out.Credentials, it)
	}
	return jsonResponse(http.StatusOK, out)
}

type healthItem struct {
	Version    int      `json:"version"`
	Optional   bool     `json:"optional,omitempty"`
	AgeSeconds *float64 `json:"age_seconds,omitempty"`
	LastError  string   `json:"last_error,omitempty"`
}

func (s *Server) health() response {
	now := s.clock.Now()
	out := struct {
		Ready       bool                  `json:"ready"`
		Credentials map[string]healthItem `json:"credentials"`
	}{Ready: s.st.Ready(), Credentials: map[string]healthItem{}}
	for _, st := range s.st.Status() {
		it := healthItem{Version: st.Version, Optional: st.Optional, LastError: st.LastError}
		if !st.CheckedAt.IsZero() {
			age := math.Round(max(now.Sub(st.CheckedAt).Seconds(), 0)*1000) / 1000
			it.AgeSeconds = &age
		}
		out.Credentials[st.Name] = it
	}
	return jsonResponse(http.StatusOK, out)
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *Server) fail(e *apiError) response {
	var b errorBody
	b.Error.Code, b.Error.Message = e.code, e.message
	return jsonResponse(e.status, b)
}

// jsonResponse answers with v, which holds no secret value.
func jsonResponse(status int, v any) response {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"encoding the answer failed"}}`)
	}
	return response{status: status, json: true, body: append(body, '\n')}
}

func (s *Server) count(status int) {
	if s.m == nil {
		return
	}
	if c, ok := s.codes[status]; ok {
		c.Inc()
		return
	}
	s.m.SocketRequests.WithLabelValues(strconv.Itoa(status)).Inc()
}
