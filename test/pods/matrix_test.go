package pods

import (
	"context"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// approleSecret is the Secret (keys role_id, secret_id) AppRole pods name
// in credlet.io/approle-secret.
const approleSecret = "credlet-approle"

// ensureAppRoleSecret creates Secret approleSecret in ns from the AppRole
// setup.sh made for partner ns (credlet-bot-NS): its role_id and a new
// secret_id.
func ensureAppRoleSecret(t *testing.T, ctx context.Context, ns string) {
	t.Helper()
	cs := cl.Kube.Clientset
	if _, err := cs.CoreV1().Secrets(ns).Get(ctx, approleSecret, metav1.GetOptions{}); err == nil {
		return
	}
	v := cl.Vault.Client()
	rid, err := v.Logical().ReadWithContext(ctx, "auth/approle/role/credlet-bot-"+ns+"/role-id")
	if err != nil || rid == nil {
		t.Fatalf("role_id of credlet-bot-%s: %v", ns, err)
	}
	sid, err := v.Logical().WriteWithContext(ctx, "auth/approle/role/credlet-bot-"+ns+"/secret-id", nil)
	if err != nil || sid == nil {
		t.Fatalf("secret_id of credlet-bot-%s: %v", ns, err)
	}
	s := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: approleSecret, Namespace: ns},
		StringData: map[string]string{"role_id": rid.Data["role_id"].(string), "secret_id": sid.Data["secret_id"].(string)},
	}
	if _, err := cs.CoreV1().Secrets(ns).Create(ctx, s, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// TestShapeMatrix: every sidecar × delivery × auth shape the injector
// admits reaches Ready in a real pod, and its app reads what that delivery
// promises (the socket, the files, or both). The classic + socket shape is
// the one whose init container used to exit 2.
func TestShapeMatrix(t *testing.T) {
	kube(t)
	ctx := context.Background()
	ns := "pods"
	ensureNamespace(t, ctx, ns)
	ensureAppRoleSecret(t, ctx, ns)

	var shapes []shape
	for _, sc := range []string{"native", "classic"} {
		for _, d := range []string{"socket", "files", "socket,files"} {
			for _, a := range []string{"kubernetes", "approle"} {
				shapes = append(shapes, shape{sc, d, a})
			}
		}
	}
	begin := time.Now()
	for _, s := range shapes {
		putCreds(t, ctx, ns, "m-"+s.name(), map[string]string{"api_key": "FAKE-matrix-key", "api_secret": "FAKE-matrix-secret"})
		createPod(t, ctx, injectedPod(ns, "m-"+s.name(), s))
	}
	var wg sync.WaitGroup
	for _, s := range shapes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			t.Run(s.name(), func(t *testing.T) {
				p := waitPod(t, ctx, ns, "m-"+s.name(), "Ready", podReady)
				t.Logf("Ready %v after the pods were created", time.Since(begin).Round(100*time.Millisecond))
				var sock struct {
					OK      bool   `json:"ok"`
					Version int    `json:"version"`
					Code    string `json:"code"`
					Error   string `json:"error"`
				}
				probeGet(t, ctx, p, "/socket?name=exchange", &sock)
				if s.socket() && (!sock.OK || sock.Version < 1) {
					t.Errorf("socket read: %+v", sock)
				}
				var file struct {
					OK    bool   `json:"ok"`
					Errno string `json:"errno"`
					Size  int    `json:"size"`
				}
				probeGet(t, ctx, p, "/file?path=/credlet/secrets/exchange/api_key", &file)
				if s.files() && (!file.OK || file.Size != len("FAKE-matrix-key")) {
					t.Errorf("file read: %+v", file)
				}
				if !s.files() && file.OK {
					t.Errorf("delivery %s, yet the app reads a credentials file", s.delivery)
				}
			})
		}()
	}
	wg.Wait()
}
