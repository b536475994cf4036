package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/credlet/credlet/internal/testenv"
)

func TestMain(m *testing.M) {
	if err := Isolate(); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestDataPlane starts the cluster without Vault and runs one pod to Ready:
// the scheduler binds it, containerd and runc start its sandbox and its
// container, the CNI bridge gives it an address the node reaches, and the
// container runs as the kubelet and the runtime promise (non-root, no
// capabilities, the runtime's default seccomp filter, no_new_privs,
// read-only root).
func TestDataPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if _, err := findBinaries(); err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root, err := ModuleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	archive, err := BuildImages(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, Options{Archives: []string{archive}, Log: os.Stderr, noVault: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	cs := c.Kube.Clientset
	uid, no, yes := int64(10001), false, true
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault}},
			Containers: []corev1.Container{{
				Name: "c", Image: PodCheckImage,
				SecurityContext: &corev1.SecurityContext{
					RunAsUser: &uid, RunAsNonRoot: &yes, AllowPrivilegeEscalation: &no, ReadOnlyRootFilesystem: &yes,
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
				ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/healthz", Port: intstr.FromInt32(8080)}}, PeriodSeconds: 1},
			}},
		},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	var p *corev1.Pod
	err = waitFor(ctx, "pod Ready", 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		p, err = cs.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, errors.New(c.PodProblems(ctx, "default"))
	}, c.kubelet)
	if err != nil {
		t.Fatalf("%v\nkubelet log:\n%s", err, tail(c.Logs("kubelet"), 4000))
	}
	t.Logf("pod Ready %v after it was created", time.Since(begin).Round(100*time.Millisecond))
	resp, err := http.Get("http://" + p.Status.PodIP + ":8080/self")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var self struct {
		UID          int    `json:"uid"`
		CapEff       string `json:"cap_eff"`
		Seccomp      string `json:"seccomp"`
		NoNewPrivs   string `json:"no_new_privs"`
		RootReadOnly bool   `json:"root_read_only"`
		WriteError   string `json:"root_write_error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&self); err != nil {
		t.Fatal(err)
	}
	t.Logf("inside the container: %+v", self)
	if self.UID != 10001 || self.CapEff != "0000000000000000" || self.Seccomp != "2" || self.NoNewPrivs != "1" || !self.RootReadOnly || self.WriteError != "EROFS" {
		t.Errorf("container posture %+v; want uid 10001, no capabilities, seccomp 2 (filter), no_new_privs 1, read-only root (EROFS)", self)
	}
}
