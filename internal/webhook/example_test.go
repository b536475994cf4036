package webhook_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credlet/credlet/internal/webhook"
)

func ExampleEdge() {
	deny := webhook.AdmitFunc(func(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
		return &admissionv1.AdmissionResponse{Result: &metav1.Status{Code: http.StatusForbidden, Message: "no pods in " + req.Namespace}}
	})
	edge := &webhook.Edge{Handler: deny, Log: slog.New(slog.DiscardHandler), Metrics: webhook.NewMetrics(prometheus.NewRegistry())}

	body := `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"4f1c0000-0000-4000-8000-00000000fake",` +
		`"kind":{"version":"v1","kind":"Pod"},"resource":{"version":"v1","resource":"pods"},"namespace":"partner-acme","operation":"CREATE","object":{}}}`
	req := httptest.NewRequest(http.MethodPost, "/mutate", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	edge.ServeHTTP(rec, req)
	fmt.Println(rec.Code, rec.Body.String())
	// Output:
	// 200 {"kind":"AdmissionReview","apiVersion":"admission.k8s.io/v1","response":{"uid":"4f1c0000-0000-4000-8000-00000000fake","allowed":false,"status":{"metadata":{},"message":"no pods in partner-acme","code":403}}}
}
