package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const testUID = types.UID("7c1d4a52-0000-4000-8000-00000000fake")

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

func review(uid types.UID) []byte {
	b, _ := json.Marshal(map[string]any{
		"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
		"request": map[string]any{
			"uid": uid, "operation": "CREATE", "namespace": "partner-acme",
			"kind":     map[string]string{"version": "v1", "kind": "Pod"},
			"resource": map[string]string{"version": "v1", "resource": "pods"},
			"object":   map[string]any{"metadata": map[string]string{"name": "bot"}},
		},
	})
	return b
}

func TestEdge(t *testing.T) {
	patchOne := AdmitFunc(func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		pt := admissionv1.PatchTypeJSONPatch
		return &admissionv1.AdmissionResponse{Allowed: true, PatchType: &pt, Patch: []byte(`[{"op":"add","path":"/metadata/annotations","value":{"a":"b"}}]`)}
	})
	tests := []struct {
		name        string
		handler     Admitter
		method      string
		contentType string
		body        []byte
		wantHTTP    int
		wantAllowed bool
		wantCode    int32 // AdmissionResponse.Result.Code, when a review is answered
		wantUID     bool
		wantResult  string
		wantMsg     string
	}{
		{name: "injected", handler: patchOne, body: review(testUID), wantHTTP: 200, wantAllowed: true, wantCode: 200, wantUID: true, wantResult: ResultInjected},
		{name: "allowed", handler: AdmitFunc(func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
			return &admissionv1.AdmissionResponse{Allowed: true}
		}), body: review(testUID), wantHTTP: 200, wantAllowed: true, wantCode: 200, wantUID: true, wantResult: ResultAllowed},
		{name: "denied", handler: AdmitFunc(func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
			return &admissionv1.AdmissionResponse{Result: &metav1.Status{Code: 403, Message: "annotation credlet.io/x: nope"}}
		}), body: review(testUID), wantHTTP: 200, wantCode: 403, wantUID: true, wantResult: ResultDenied, wantMsg: "credlet.io/x"},
		{name: "panic keeps the UID", handler: AdmitFunc(func(context.Context, *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
			panic("boom")
		}), body: review(testUID), wantHTTP: 200, wantCode: 500, wantUID: true, wantResult: ResultError, wantMsg: "internal error"},
		{name: "GET", handler: patchOne, method: http.MethodGet, wantHTTP: 405, wantResult: ResultError},
		{name: "wrong content type", handler: patchOne, contentType: "text/plain", body: review(testUID), wantHTTP: 415, wantResult: ResultError},
		{name: "body too large", handler: patchOne, body: append(review(testUID), bytes.Repeat([]byte(" "), 2<<10)...), wantHTTP: 413, wantResult: ResultError},
		{name: "not JSON", handler: patchOne, body: []byte("{"), wantHTTP: 200, wantCode: 400, wantResult: ResultError},
		{name: "no request", handler: patchOne, body: []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`), wantHTTP: 200, wantCode: 400, wantResult: ResultError},
		{name: "v1beta1", handler: patchOne, body: bytes.Replace(review(testUID), []byte("admission.k8s.io/v1"), []byte("admission.k8s.io/v1beta1"), 1),
			wantHTTP: 200, wantCode: 400, wantUID: true, wantResult: ResultError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewMetrics(prometheus.NewRegistry())
			e := &Edge{Handler: tt.handler, Log: discard(), Metrics: m, MaxBody: 1 << 10}
			method, ct := tt.method, tt.contentType
			if method == "" {
				method = http.MethodPost
			}
			if ct == "" {
				ct = "application/json; charset=utf-8"
			}
			req := httptest.NewRequest(method, "/mutate", bytes.NewReader(tt.body))
			req.Header.Set("Content-Type", ct)
			rec := httptest.NewRecorder()
			e.ServeHTTP(rec, req)
			if rec.Code != tt.wantHTTP {
				t.Fatalf("HTTP %d, want %d: %s", rec.Code, tt.wantHTTP, rec.Body)
			}
			if got := counterValue(t, m.Admissions.WithLabelValues(tt.wantResult)); got != 1 {
				t.Errorf("admissions{result=%q} = %v, want 1", tt.wantResult, got)
			}
			if n := histogramCount(t, m.Duration); n != 1 {
				t.Errorf("duration histogram count %d", n)
			}
			if tt.wantCode == 0 {
				return
			}
			var out admissionv1.AdmissionReview
			if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
				t.Fatalf("response %q: %v", rec.Body, err)
			}
			if out.APIVersion != "admission.k8s.io/v1" || out.Kind != "AdmissionReview" {
				t.Errorf("response type %s %s", out.APIVersion, out.Kind)
			}
			r := out.Response
			if r.Allowed != tt.wantAllowed || r.Result == nil || r.Result.Code != tt.wantCode {
				t.Errorf("allowed=%v result=%+v, want allowed=%v code %d", r.Allowed, r.Result, tt.wantAllowed, tt.wantCode)
			}
			if tt.wantUID && r.UID != testUID {
				t.Errorf("UID %q, want %q", r.UID, testUID)
			}
			if tt.wantMsg != "" && !strings.Contains(r.Result.Message, tt.wantMsg) {
				t.Errorf("message %q lacks %q", r.Result.Message, tt.wantMsg)
			}
			if tt.wantResult == ResultInjected && (r.PatchType == nil || len(r.Patch) == 0) {
				t.Errorf("no patch in %+v", r)
			}
		})
	}
}

func TestMetricsHandler(t *testing.T) {
	m := NewMetrics(prometheus.NewRegistry())
	m.Admissions.WithLabelValues(ResultDenied).Inc()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	for _, want := range []string{
		`credlet_injector_admissions_total{result="denied"} 1`,
		`credlet_injector_admissions_total{result="injected"} 0`,
		"credlet_injector_admission_duration_seconds_bucket",
		"credlet_injector_build_info",
		"go_goroutines",
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

func counterValue(t testing.TB, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

func histogramCount(t testing.TB, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
