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
	"github.com/credlet/credlet/internal/store"
)

// Header values shared by every response; net/http only reads them.
var (
	hdrJSON    = []string{"application/json"}
	hdrNoStore = []string{"no-store"}
	hdrClose   = []string{"close"}
	hdrAllow   = []string{"GET, HEAD"}
)

var errWaitTimeout = errors.New("long poll timed out")

// ServeHTTP answers one request. Handlers never return errors: they answer.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p, _ := r.Context().Value(peerKey{}).(peer)
	if !p.allowed {
		s.deny(w, r, p)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header()["Allow"] = hdrAllow
		s.fail(w, &apiError{http.StatusMethodNotAllowed, "method_not_allowed",
			fmt.Sprintf("method %s: only GET and HEAD are allowed", clip(r.Method))})
		return
	}
	if r.Header["Origin"] != nil || r.Header["Referer"] != nil {
		s.fail(w, &apiError{http.StatusForbidden, "forbidden",
			"requests with an Origin or Referer header are refused: the socket API is not for browsers"})
		return
	}
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		w.Header()["Connection"] = hdrClose // don't read the body to reuse the connection
		s.fail(w, badRequest("%s requests take no body", r.Method))
		return
	}
	req, aerr := parseRequest(r.URL.Path, r.URL.RawQuery, s.maxWait)
	if aerr != nil {
		s.fail(w, aerr)
		return
	}
	switch req.route {
	case routeGet:
		s.get(w, r, req, p)
	case routeList:
		s.list(w)
	case routeHealth:
		s.health(w)
	}
}

// deny answers a peer outside the allow lists: 403, an audit record, and the
// connection closed after the answer.
func (s *Server) deny(w http.ResponseWriter, r *http.Request, p peer) {
	var name string
	if n, ok := strings.CutPrefix(r.URL.Path, credentialsPrefix); ok && len(n) <= 63 {
		name = n
	}
	detail := fmt.Sprintf("peer uid %d gid %d not in the allow list", p.UID, p.GID)
	var ap *audit.Peer
	if p.known {
		ap = &audit.Peer{UID: p.UID, GID: p.GID, PID: p.PID}
	} else {
		detail = "peer credentials unavailable"
	}
	s.audit.Log(audit.Record{Event: audit.Deny, Credential: name, Peer: ap, Result: "denied", Detail: detail})
	w.Header()["Connection"] = hdrClose
	s.fail(w, &apiError{http.StatusForbidden, "forbidden",
		fmt.Sprintf("uid %d gid %d may not read credentials from this agent (see --allow-uid, --allow-gid)", p.UID, p.GID)})
}

func (s *Server) get(w http.ResponseWriter, r *http.Request, req request, p peer) {
	set, aerr := s.acquire(r, req)
	if aerr != nil {
		s.fail(w, aerr)
		return
	}
	if set == nil { // long poll timed out: nothing new
		s.notModified(w, req.name)
		return
	}
	defer set.Release()
	if !req.wait && etagMatches(r.Header["If-None-Match"], set.Version()) {
		s.notModified(w, req.name)
		return
	}
	if err := s.writeSet(w, r.Method == http.MethodHead, set); err != nil {
		return // the peer went away mid-answer
	}
	if r.Method == http.MethodGet {
		s.audit.ObserveRead(p.Peer, set.Name(), set.Version())
	}
}

// acquire returns the set to answer with: the current version, or for a long
// poll the first version other than req.version. (nil, nil) means the long
// poll timed out.
func (s *Server) acquire(r *http.Request, req request) (*store.Set, *apiError) {
	set, err := s.st.Acquire(req.name)
	if err == nil && (!req.wait || set.Version() != req.version) {
		return set, nil
	}
	if err != nil && (!req.wait || !errors.Is(err, store.ErrNotReady)) {
		return nil, storeError(req.name, err)
	}
	if set != nil {
		set.Release()
	}
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	t := s.clock.NewTimer(req.timeout)
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
	set, err = s.st.Wait(ctx, req.name, req.version)
	switch {
	case err == nil:
		return set, nil
	case errors.Is(context.Cause(ctx), errWaitTimeout):
		return nil, nil
	case ctx.Err() != nil:
		return nil, &apiError{http.StatusServiceUnavailable, "not_ready", "agent shutting down"}
	default:
		return nil, storeError(req.name, err)
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

func etagMatches(inm []string, version int) bool {
	for _, h := range inm {
		for tag := range strings.SplitSeq(h, ",") {
			tag = strings.TrimPrefix(strings.TrimSpace(tag), "W/")
			if tag == "*" || (len(tag) > 2 && tag[0] == '"' && tag[len(tag)-1] == '"' && tag[1:len(tag)-1] == strconv.Itoa(version)) {
				return true
			}
		}
	}
	return false
}

func etag(version int) []string { return []string{`"` + strconv.Itoa(version) + `"`} }

// notModified answers 304 with the current version's ETag, if any.
func (s *Server) notModified(w http.ResponseWriter, name string) {
	if set, err := s.st.Acquire(name); err == nil {
		w.Header()["Etag"] = etag(set.Version())
		set.Release()
	}
	w.Header()["Cache-Control"] = hdrNoStore
	w.WriteHeader(http.StatusNotModified)
	s.count(http.StatusNotModified)
}

// writeSet writes {"name","version","fields","fetched_at","expires_at"?}.
// The answer is encoded from the set's locked views into a locked scratch
// buffer, handed to net/http in one Write, and wiped.
func (s *Server) writeSet(w http.ResponseWriter, head bool, set *store.Set) error {
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

	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = []string{strconv.Itoa(n)}
	h["Etag"] = etag(set.Version())
	if head {
		w.WriteHeader(http.StatusOK)
		s.count(http.StatusOK)
		return nil
	}
	buf, err := s.scratch.get(n)
	if err != nil {
		delete(h, "Content-Length")
		delete(h, "Etag")
		s.fail(w, &apiError{http.StatusServiceUnavailable, "not_ready", "no memory to encode the answer"})
		return err
	}
	fw := fixed{b: buf.Bytes()[:0:n]}
	_, _ = fw.Write(pre)
	_ = set.WriteFieldsJSON(&fw)
	_, _ = fw.Write(suf)
	defer s.scratch.put(buf, len(fw.b))
	if fw.err != nil || len(fw.b) != n {
		delete(h, "Content-Length")
		delete(h, "Etag")
		s.fail(w, &apiError{http.StatusServiceUnavailable, "not_ready", "encoding the answer failed"})
		return errOverflow
	}
	w.WriteHeader(http.StatusOK)
	s.count(http.StatusOK)
	_, err = w.Write(fw.b)
	return err
}

type listItem struct {
	Name      string     `json:"name"`
	Version   int        `json:"version"`
	FetchedAt *time.Time `json:"fetched_at,omitempty"`
}

func (s *Server) list(w http.ResponseWriter) {
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
	s.writeJSON(w, http.StatusOK, out)
}

type healthItem struct {
	Version    int      `json:"version"`
	Optional   bool     `json:"optional,omitempty"`
	AgeSeconds *float64 `json:"age_seconds,omitempty"`
	LastError  string   `json:"last_error,omitempty"`
}

func (s *Server) health(w http.ResponseWriter) {
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
	s.writeJSON(w, http.StatusOK, out)
}

type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func (s *Server) fail(w http.ResponseWriter, e *apiError) {
	var b errorBody
	b.Error.Code, b.Error.Message = e.code, e.message
	s.writeJSON(w, e.status, b)
}

// writeJSON answers with v, which holds no secret value.
func (s *Server) writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body = []byte(`{"error":{"code":"internal","message":"encoding the answer failed"}}`)
	}
	body = append(body, '\n')
	h := w.Header()
	h["Content-Type"] = hdrJSON
	h["Cache-Control"] = hdrNoStore
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(status)
	s.count(status)
	_, _ = w.Write(body)
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
