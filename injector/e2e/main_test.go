package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/credlet/credlet/internal/annotation"
	"github.com/credlet/credlet/internal/injectorcmd"
	"github.com/credlet/credlet/internal/testenv"
)

// Shared by the tests; started once in TestMain.
var (
	vault      *testenv.Vault
	kube       *testenv.Kube
	metricsURL string
)

const (
	nsAcme  = "e2e-acme"  // pods here may read secret/partners/acme/...
	nsAgent = "e2e-agent" // the agent end-to-end test's namespace
	nsJWT   = "e2e-jwt"   // the same with jwt auth at the config's authMount
	nsOther = "e2e-other" // not in the injector's config

	jwtMount = "jwt-e2e" // nsJWT's authMount in the injector's config
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(ctx context.Context, s *testenv.Setup) error {
		var err error
		if vault, err = s.StartVault(ctx); err != nil {
			return err
		}
		if kube, err = s.StartKube(ctx, testenv.WithWebhooks(webhookOptions())); err != nil {
			return err
		}
		if err := vault.ConfigureKubernetesAuth(kube, ""); err != nil {
			return err
		}
		if err := vault.ConfigureJWTAuth(kube, jwtMount); err != nil {
			return err
		}
		for _, ns := range []string{nsAcme, nsAgent, nsJWT, nsOther} {
			if err := kube.EnsureNamespace(ctx, ns); err != nil {
				return err
			}
		}
		stop, err := startInjector(ctx)
		if err != nil {
			return err
		}
		s.Cleanup(stop)
		return nil
	})
}

// webhookOptions registers the injector as a platform team would.
func webhookOptions() envtest.WebhookInstallOptions {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	reinvoke := admissionregistrationv1.IfNeededReinvocationPolicy
	path := "mutate"
	timeout := int32(10)
	return envtest.WebhookInstallOptions{
		MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{{
			ObjectMeta: metav1.ObjectMeta{Name: "credlet-injector"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    "inject.credlet.io",
				AdmissionReviewVersions: []string{"v1"},
				SideEffects:             &none,
				FailurePolicy:           &fail,
				ReinvocationPolicy:      &reinvoke,
				TimeoutSeconds:          &timeout,
				ClientConfig: admissionregistrationv1.WebhookClientConfig{
					Service: &admissionregistrationv1.ServiceReference{Name: "credlet-injector", Namespace: "credlet-system", Path: &path},
				},
				ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{annotation.InjectLabel: "true"}},
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}},
				}},
			}},
		}},
	}
}

// startInjector runs credlet-injector in-process on the address and with
// the serving certificate envtest generated for the webhook configuration.
func startInjector(ctx context.Context) (stop func() error, err error) {
	w := kube.Env.WebhookInstallOptions
	dir, err := os.MkdirTemp("", "credlet-e2e-injector")
	if err != nil {
		return nil, err
	}
	cfg := filepath.Join(dir, "config.yaml")
	body := fmt.Sprintf(`defaults:
  vaultAddr: %s
  agentImage: registry.example.test/credlet-agent:e2e
namespaces:
  %s:
    allowedPaths: [secret/partners/acme]
  %s:
    allowedPaths: [secret/partners/e2e]
  %s:
    allowedPaths: [secret/partners/e2e]
    authMount: %s
`, vault.Addr, nsAcme, nsAgent, nsJWT, jwtMount)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		return nil, err
	}
	metricsPort, err := testenv.FreePort()
	if err != nil {
		return nil, err
	}
	metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", metricsPort)
	listen := net.JoinHostPort(w.LocalServingHost, strconv.Itoa(w.LocalServingPort))
	o := injectorcmd.Options{
		Listen:        listen,
		TLSCertFile:   filepath.Join(w.LocalServingCertDir, "tls.crt"),
		TLSKeyFile:    filepath.Join(w.LocalServingCertDir, "tls.key"),
		ConfigFile:    cfg,
		MetricsListen: fmt.Sprintf("127.0.0.1:%d", metricsPort),
		DrainTimeout:  5 * time.Second,
		CertPoll:      10 * time.Second,
	}
	logFile, err := os.Create(filepath.Join(dir, "injector.log"))
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- injectorcmd.Run(rctx, o, slog.New(slog.NewJSONHandler(logFile, nil))) }()
	stop = func() error {
		cancel()
		err := <-done
		logFile.Close()
		if err != nil {
			b, _ := os.ReadFile(logFile.Name())
			err = fmt.Errorf("injector: %w\n%s", err, b)
		}
		return errors.Join(err, os.RemoveAll(dir))
	}
	if err := waitReady(ctx, "https://"+listen+"/readyz", w.LocalServingCAData, done); err != nil {
		_ = stop()
		return nil, err
	}
	return stop, nil
}

func waitReady(ctx context.Context, url string, caPEM []byte, done <-chan error) error {
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		resp, err := c.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case err := <-done:
			return fmt.Errorf("injector exited: %v", err)
		case <-ctx.Done():
			return fmt.Errorf("injector not ready at %s: %w (last: %v)", url, ctx.Err(), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}
