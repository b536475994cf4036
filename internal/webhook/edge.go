package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Admitter answers one admission request. It never fails: it returns a
// response that allows, patches, denies or reports an error. The edge
// fills in the UID.
type Admitter interface {
	Admit(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse
}

// AdmitFunc is an Admitter.
type AdmitFunc func(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse

// Admit calls f.
func (f AdmitFunc) Admit(ctx context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	return f(ctx, req)
}

// MaxBodyBytes caps an AdmissionReview: a pod is at most about 1.5 MB in
// etcd, and a CREATE review carries one object.
const MaxBodyBytes = 4 << 20

var reviewKind = admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")

// Edge is the /mutate endpoint: it decodes an AdmissionReview v1, calls the
// Admitter and writes its response. Every answer that can carry the
// request's UID does, a panic included.
type Edge struct {
	Handler Admitter
	Log     *slog.Logger
	Metrics *Metrics
	// MaxBody overrides MaxBodyBytes.
	MaxBody int64
}

func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	result := ResultError
	defer func() {
		if p := recover(); p != nil { // before the UID was known
			e.Log.Error("panic in admission edge", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		e.Metrics.Admissions.WithLabelValues(result).Inc()
		e.Metrics.Duration.Observe(time.Since(start).Seconds())
	}()
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
		return
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	limit := e.MaxBody
	if limit <= 0 {
		limit = MaxBodyBytes
	}
	in := getBuffer()
	defer putBuffer(in)
	if r.ContentLength > 0 && r.ContentLength <= limit {
		in.Grow(int(r.ContentLength))
	}
	_, err := in.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	body := in.Bytes() // decoding copies what it keeps: the buffer goes back to the pool
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(w, fmt.Sprintf("AdmissionReview larger than %d bytes", limit), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(w, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	var review admissionv1.AdmissionReview
	if err := json.Unmarshal(body, &review); err != nil || review.Request == nil {
		if err == nil {
			err = errors.New("no request")
		}
		e.write(w, errored(http.StatusBadRequest, fmt.Errorf("decode AdmissionReview: %w", err)))
		return
	}
	req := review.Request
	if gvk := review.GroupVersionKind(); gvk != reviewKind {
		resp := errored(http.StatusBadRequest, fmt.Errorf("want %s, got %s", reviewKind, gvk))
		resp.UID = req.UID
		e.write(w, resp)
		return
	}
	resp := e.handle(r.Context(), req)
	resp.UID = req.UID
	if resp.Result == nil {
		resp.Result = &metav1.Status{}
	}
	if resp.Result.Code == 0 {
		resp.Result.Code = http.StatusOK
	}
	result = classify(resp)
	e.write(w, resp)
}

func errored(code int32, err error) *admissionv1.AdmissionResponse {
	return &admissionv1.AdmissionResponse{Result: &metav1.Status{Status: metav1.StatusFailure, Code: code, Message: err.Error()}}
}

// handle calls the handler, turning a panic into an error response.
func (e *Edge) handle(ctx context.Context, req *admissionv1.AdmissionRequest) (resp *admissionv1.AdmissionResponse) {
	defer func() {
		if p := recover(); p != nil {
			e.Log.Error("panic in admission handler", "request_uid", string(req.UID), "namespace", req.Namespace,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			resp = errored(http.StatusInternalServerError, errors.New("credlet-injector failed on this pod (internal error; see its log)"))
		}
	}()
	if resp = e.Handler.Admit(ctx, req); resp == nil {
		resp = errored(http.StatusInternalServerError, errors.New("credlet-injector gave no answer (internal error)"))
	}
	return resp
}

func classify(resp *admissionv1.AdmissionResponse) string {
	switch {
	case resp.Allowed && len(resp.Patch) > 0:
		return ResultInjected
	case resp.Allowed:
		return ResultAllowed
	case resp.Result != nil && resp.Result.Code == http.StatusForbidden:
		return ResultDenied
	}
	return ResultError
}

func (e *Edge) write(w http.ResponseWriter, resp *admissionv1.AdmissionResponse) {
	review := admissionv1.AdmissionReview{Response: resp}
	review.SetGroupVersionKind(reviewKind)
	out := getBuffer()
	defer putBuffer(out)
	if err := json.NewEncoder(out).Encode(review); err != nil {
		e.Log.Error("encode AdmissionReview", "error", err)
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(out.Len()))
	if _, err := out.WriteTo(w); err != nil {
		e.Log.Debug("write AdmissionReview", "error", err)
	}
}

// Request and response bodies go through pooled buffers: reading a review
// with io.ReadAll and encoding the answer with json.Marshal allocated
// about 10 kB per admission, the largest share of the garbage on a cached
// one; pooling cut a cached admission's CPU by 7–10%.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer: a buffer grown by an unusually large review is dropped
// rather than kept.
const maxPooledBuffer = 256 << 10

func getBuffer() *bytes.Buffer {
	b := buffers.Get().(*bytes.Buffer)
	b.Reset()
	return b
}

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooledBuffer {
		buffers.Put(b)
	}
}
