package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"runtime/debug"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
)

// MaxBodyBytes caps an AdmissionReview: a pod is at most about 1.5 MB in
// etcd, and a CREATE review carries one object.
const MaxBodyBytes = 4 << 20

var reviewKind = admissionv1.SchemeGroupVersion.WithKind("AdmissionReview")

// Edge is the /mutate endpoint: it decodes an AdmissionReview v1, calls the
// admission.Handler and writes its response. Every answer that can carry the
// request's UID does, a panic included.
type Edge struct {
	Handler admission.Handler
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
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
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
		e.write(w, admission.Errored(http.StatusBadRequest, fmt.Errorf("decode AdmissionReview: %w", err)))
		return
	}
	if gvk := review.GroupVersionKind(); gvk != reviewKind {
		resp := admission.Errored(http.StatusBadRequest, fmt.Errorf("want %s, got %s", reviewKind, gvk))
		resp.UID = review.Request.UID
		e.write(w, resp)
		return
	}
	req := admission.Request{AdmissionRequest: *review.Request}
	resp := e.handle(r.Context(), req)
	if len(resp.Patches) > 0 {
		var err error
		if resp.Patch, err = encodePatch(resp.Patches); err != nil {
			resp = admission.Errored(http.StatusInternalServerError, err)
		}
		if resp.Allowed {
			pt := admissionv1.PatchTypeJSONPatch
			resp.PatchType = &pt
		}
		resp.Patches = nil // Complete would encode them again
	}
	if err := resp.Complete(req); err != nil {
		resp = admission.Errored(http.StatusInternalServerError, fmt.Errorf("encode patch: %w", err))
		resp.UID = req.UID
	}
	result = classify(resp)
	e.write(w, resp)
}

// handle calls the handler, turning a panic into an error response.
func (e *Edge) handle(ctx context.Context, req admission.Request) (resp admission.Response) {
	defer func() {
		if p := recover(); p != nil {
			e.Log.Error("panic in admission handler", "request_uid", string(req.UID), "namespace", req.Namespace,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
			resp = admission.Errored(http.StatusInternalServerError, errors.New("credlet-injector failed on this pod (internal error; see its log)"))
		}
	}()
	return e.Handler.Handle(ctx, req)
}

func classify(resp admission.Response) string {
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

func (e *Edge) write(w http.ResponseWriter, resp admission.Response) {
	review := admissionv1.AdmissionReview{Response: &resp.AdmissionResponse}
	review.SetGroupVersionKind(reviewKind)
	out, err := json.Marshal(review)
	if err != nil {
		e.Log.Error("encode AdmissionReview", "error", err)
		http.Error(w, "encode response", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	if _, err := w.Write(out); err != nil {
		e.Log.Debug("write AdmissionReview", "error", err)
	}
}
