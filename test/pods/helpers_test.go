package pods

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes"

	"github.com/credlet/credlet/internal/cluster"
	"github.com/credlet/credlet/internal/testenv"
)

// podWait is how long a pod gets to reach a state: generous, the machine
// may be loaded, and a failure prints what the pod was doing.
const podWait = 3 * time.Minute

func kube(t *testing.T) kubernetes.Interface {
	t.Helper()
	testenv.NeedServers(t)
	return cl.Kube.Clientset
}

func ensureNamespace(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if _, err := cl.Kube.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// waitPod polls pod ns/name until cond holds, and fails the test with the
// pod's state when podWait passes.
func waitPod(t *testing.T, ctx context.Context, ns, name, what string, cond func(*corev1.Pod) bool) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, podWait)
	defer cancel()
	for {
		p, err := cl.Kube.Clientset.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err == nil && cond(p) {
			return p
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s/%s: not %s after %v: %v; %s", ns, name, what, podWait, err, cl.PodProblems(context.Background(), ns))
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func podReady(p *corev1.Pod) bool {
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// probeGet asks the podcheck container of pod p (port 8080) and decodes its
// JSON answer into out.
func probeGet(t *testing.T, ctx context.Context, p *corev1.Pod, path string, out any) {
	t.Helper()
	probeGetAddr(t, ctx, p.Status.PodIP+":8080", path, out)
}

// probeGetAddr is probeGet at host:port.
func probeGetAddr(t *testing.T, ctx context.Context, addr, path string, out any) {
	t.Helper()
	url := fmt.Sprintf("http://%s%s", addr, path)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("podcheck %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("podcheck %s: %s: %s", url, resp.Status, b)
	}
	if err := json.Unmarshal(b, out); err != nil {
		t.Fatalf("podcheck %s: %v: %s", url, err, b)
	}
}

// podcheckContainer is a podcheck container running as uid, hardened like
// a restricted-profile app.
func podcheckContainer(name string, uid int64) corev1.Container {
	no, yes := false, true
	return corev1.Container{
		Name:  name,
		Image: cluster.PodCheckImage,
		Args:  []string{"--listen=:8080"},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser:                &uid,
			RunAsGroup:               &uid,
			RunAsNonRoot:             &yes,
			AllowPrivilegeEscalation: &no,
			ReadOnlyRootFilesystem:   &yes,
			Capabilities:             &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
		},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
	}
}
