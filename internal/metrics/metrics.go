package metrics

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Rotation results, the values of credlet_rotations_total's result label.
const (
	RotationCommitted     = "committed"
	RotationFetchFailed   = "fetch_failed"
	RotationDecryptFailed = "decrypt_failed"
	RotationInvalid       = "invalid"
	RotationVerifyFailed  = "verify_failed"
)

// Memory-lock scopes, the values of credlet_memory_locked's scope label.
const (
	ScopeProcess   = "process"
	ScopeBuffers   = "buffers"
	ScopeSecretmem = "secretmem"
	ScopeFiles     = "files"
)

// Agent holds the agent's collectors. A nil *Agent is never used: a
// component whose Options leave Metrics nil makes its own private set with
// New (recorded, never read), so no component checks for nil. Tests make
// their own with New and read them back through Registry.
type Agent struct {
	Registry *prometheus.Registry

	Ready                prometheus.Gauge
	TokenTTL             prometheus.Gauge
	TokenRenewals        *prometheus.CounterVec // result
	Logins               *prometheus.CounterVec // method, result
	CredentialVersion    *prometheus.GaugeVec   // name
	CredentialAge        *prometheus.GaugeVec   // name
	LastRotation         *prometheus.GaugeVec   // name
	CredentialExpiry     *prometheus.GaugeVec   // name; 0 when the served version does not expire
	Rotations            *prometheus.CounterVec // name, result
	VaultRequestDuration *prometheus.HistogramVec
	SocketRequests       *prometheus.CounterVec // code
	SocketDenied         prometheus.Counter
	MemoryLocked         *prometheus.GaugeVec // scope
	RefreshInterval      prometheus.Gauge     // --refresh in seconds; the stale-credential alert scales with it
}

// New creates the agent's metrics on a fresh registry.
func New() *Agent {
	m := &Agent{
		Registry: prometheus.NewRegistry(),
		Ready: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "credlet_ready", Help: "1 when every required credential set has been committed at least once.",
		}),
		TokenTTL: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "credlet_token_ttl_seconds", Help: "Seconds left on the agent's Vault token.",
		}),
		TokenRenewals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credlet_token_renewals_total", Help: "Vault token renewals by result (success, error, capped).",
		}, []string{"result"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credlet_logins_total", Help: "Vault logins by auth method and result (success, transient_error, permanent_error).",
		}, []string{"method", "result"}),
		CredentialVersion: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credlet_credential_version", Help: "KV v2 version of the credential set being served.",
		}, []string{"name"}),
		CredentialAge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credlet_credential_age_seconds", Help: "Seconds since the credential set was last checked successfully against Vault.",
		}, []string{"name"}),
		LastRotation: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credlet_credential_last_rotation_timestamp_seconds", Help: "Unix time the served version was created in Vault.",
		}, []string{"name"}),
		CredentialExpiry: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credlet_credential_expiry_timestamp_seconds",
			Help: "Unix time the served version expires: the earlier of its KV v2 custom metadata expires_at and its scheduled deletion; 0 when it does not expire.",
		}, []string{"name"}),
		Rotations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credlet_rotations_total", Help: "Attempts to publish a new credential version, by result.",
		}, []string{"name", "result"}),
		VaultRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "credlet_vault_request_duration_seconds",
			Help:    "Duration of requests to Vault by operation.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"op"}),
		SocketRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "credlet_socket_requests_total", Help: "Socket API requests by HTTP status code.",
		}, []string{"code"}),
		SocketDenied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "credlet_socket_denied_total", Help: "Socket connections refused because the peer is not allowed.",
		}),
		MemoryLocked: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "credlet_memory_locked", Help: "1 when memory of this scope is locked (process: mlockall; buffers/secretmem: bytes of locked secret buffers; files: bytes of delivered files kept mlocked).",
		}, []string{"scope"}),
		RefreshInterval: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "credlet_refresh_interval_seconds", Help: "The metadata poll interval (--refresh); 0 until the agent sets it.",
		}),
	}
	m.Registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.Ready, m.TokenTTL, m.TokenRenewals, m.Logins,
		m.CredentialVersion, m.CredentialAge, m.LastRotation, m.CredentialExpiry, m.Rotations,
		m.VaultRequestDuration, m.SocketRequests, m.SocketDenied, m.MemoryLocked, m.RefreshInterval,
	)
	for _, s := range []string{ScopeProcess, ScopeBuffers, ScopeSecretmem, ScopeFiles} {
		m.MemoryLocked.WithLabelValues(s).Set(0)
	}
	return m
}

// Handler serves the registry in the Prometheus exposition format.
func (m *Agent) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// InitCredential pre-creates a credential set's series so dashboards and
// alerts see zeros rather than absent series.
func (m *Agent) InitCredential(name string) {
	m.CredentialVersion.WithLabelValues(name)
	m.CredentialAge.WithLabelValues(name)
	m.CredentialExpiry.WithLabelValues(name)
	for _, r := range []string{RotationCommitted, RotationFetchFailed, RotationDecryptFailed, RotationInvalid, RotationVerifyFailed} {
		m.Rotations.WithLabelValues(name, r)
	}
}
