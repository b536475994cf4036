package testenv_test

import (
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/credlet/credlet/internal/testenv"
)

// probeLabel marks namespaces whose ConfigMaps go through the probe webhook,
// so the webhook touches nothing else on the shared apiserver.
const probeLabel = "testenv.credlet.io/probe"

// probeWebhooks is installed by TestMain: a mutating webhook for ConfigMaps
// created in namespaces labelled probeLabel=on.
func probeWebhooks() envtest.WebhookInstallOptions {
	fail := admissionregistrationv1.Fail
	none := admissionregistrationv1.SideEffectClassNone
	path := "mutate"
	return envtest.WebhookInstallOptions{
		MutatingWebhooks: []*admissionregistrationv1.MutatingWebhookConfiguration{{
			ObjectMeta: metav1.ObjectMeta{Name: "credlet-testenv-probe"},
			Webhooks: []admissionregistrationv1.MutatingWebhook{{
				Name:                    "probe.testenv.credlet.io",
				AdmissionReviewVersions: []string{"v1"},
				SideEffects:             &none,
				FailurePolicy:           &fail,
				ClientConfig: admissionregistrationv1.WebhookClientConfig{
					Service: &admissionregistrationv1.ServiceReference{Name: "unused", Namespace: "unused", Path: &path},
				},
				NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{probeLabel: "on"}},
				Rules: []admissionregistrationv1.RuleWithOperations{{
					Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
					Rule: admissionregistrationv1.Rule{
						APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"},
					},
				}},
			}},
		}},
	}
}

// TestWebhookProbe serves the webhook WithWebhooks installed, with the
// certificate envtest generated, and checks the apiserver calls it.
func TestWebhookProbe(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	w := kube.Env.WebhookInstallOptions
	if !strings.HasPrefix(w.LocalServingCertDir, filepath.Dir(kube.Env.ControlPlane.APIServer.CertDir)) {
		t.Errorf("serving certs in %s, want them in the kube data dir (removed by Stop)", w.LocalServingCertDir)
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(w.LocalServingCertDir, "tls.crt"), filepath.Join(w.LocalServingCertDir, "tls.key"))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(w.LocalServingHost, strconv.Itoa(w.LocalServingPort)))
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:           http.HandlerFunc(probeHandler),
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}},
		ReadHeaderTimeout: 5 * time.Second,
	}
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	t.Cleanup(func() { _ = srv.Close() })

	const ns = "webhook-probe"
	_, err = kube.Clientset.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{
		ObjectMeta: metav1.ObjectMeta{Name: ns, Labels: map[string]string{probeLabel: "on"}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm, err := kube.Clientset.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "probe"},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create through the webhook: %v", err)
	}
	if cm.Labels["probed"] != "yes" {
		t.Errorf("stored labels %v, want probed=yes set by the webhook", cm.Labels)
	}
}

func probeHandler(w http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&review); err != nil || review.Request == nil {
		http.Error(w, "bad review", http.StatusBadRequest)
		return
	}
	pt := admissionv1.PatchTypeJSONPatch
	review.Response = &admissionv1.AdmissionResponse{
		UID:       review.Request.UID,
		Allowed:   true,
		Patch:     []byte(`[{"op":"add","path":"/metadata/labels","value":{"probed":"yes"}}]`),
		PatchType: &pt,
	}
	review.Request = nil
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(review)
}
