package webhook

import (
	"crypto/x509"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/credlet/credlet/internal/version"
)

// Admission results, the values of the result label.
const (
	ResultInjected = "injected" // allowed with a patch
	ResultAllowed  = "allowed"  // allowed unchanged (not labelled, already injected, not a pod creation)
	ResultDenied   = "denied"   // refused with a message for the pod's author
	ResultError    = "error"    // the injector failed or the request was malformed
)

// Metrics are the injector's metrics.
type Metrics struct {
	Admissions  *prometheus.CounterVec
	Duration    prometheus.Histogram
	CertReloads *prometheus.CounterVec
	CertExpiry  prometheus.Gauge

	gatherer prometheus.Gatherer
}

// NewMetrics registers the injector's metrics, plus Go and process
// collectors, on reg.
func NewMetrics(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		Admissions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credlet_injector_admissions_total",
			Help: "Admission requests answered, by result: injected, allowed, denied, error.",
		}, []string{"result"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "credlet_injector_admission_duration_seconds",
			Help:    "Time to answer an admission request, from reading the body to writing the response.",
			Buckets: []float64{.0002, .0005, .001, .002, .005, .01, .025, .05, .1, .25, 1},
		}),
		CertReloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credlet_injector_cert_reloads_total",
			Help: "Serving certificate reloads after a change on disk, by result: ok, error.",
		}, []string{"result"}),
		CertExpiry: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "credlet_injector_cert_not_after_timestamp_seconds",
			Help: "Expiry of the serving certificate in service, as a Unix time.",
		}),
		gatherer: reg,
	}
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "credlet_injector_build_info",
		Help: "Always 1; labels carry the build's version and commit.",
	}, []string{"version", "commit"})
	build.WithLabelValues(version.Version, version.Commit).Set(1)
	reg.MustRegister(m.Admissions, m.Duration, m.CertReloads, m.CertExpiry, build,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	for _, r := range []string{ResultInjected, ResultAllowed, ResultDenied, ResultError} {
		m.Admissions.WithLabelValues(r)
	}
	for _, r := range []string{"ok", "error"} {
		m.CertReloads.WithLabelValues(r)
	}
	return m
}

// ObserveCert records a reload attempt; it fits certwatch.Options.OnReload.
func (m *Metrics) ObserveCert(leaf *x509.Certificate, err error) {
	if err != nil {
		m.CertReloads.WithLabelValues("error").Inc()
		return
	}
	m.CertReloads.WithLabelValues("ok").Inc()
	m.SetCert(leaf)
}

// SetCert records the certificate in service.
func (m *Metrics) SetCert(leaf *x509.Certificate) {
	if leaf != nil {
		m.CertExpiry.Set(float64(leaf.NotAfter.Unix()))
	}
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{})
}
