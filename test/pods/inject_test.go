package pods

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credlet/credlet/internal/mutate"
)

// shape is one way the injector sets a pod up.
type shape struct {
	sidecar  string // native or classic
	delivery string // socket, files or socket,files
	auth     string // kubernetes or approle
}

func (s shape) name() string {
	d := map[string]string{"socket": "sock", "files": "files", "socket,files": "both"}[s.delivery]
	a := map[string]string{"kubernetes": "k8s", "approle": "approle"}[s.auth]
	return s.sidecar + "-" + d + "-" + a
}

func (s shape) socket() bool { return strings.Contains(s.delivery, "socket") }
func (s shape) files() bool  { return strings.Contains(s.delivery, "files") }

// appUID is the uid of the app (podcheck) container in injected test pods;
// the agent runs as it too.
const appUID = 10001

// injectedPod is a pod that asks for credential set "exchange" at
// partnerPath(ns, name) (putCreds writes it) in the given shape, with podcheck as its app
// (uid appUID, port 8080) and extra containers appended.
func injectedPod(ns, name string, s shape, extra ...corev1.Container) *corev1.Pod {
	ann := map[string]string{
		"credlet.io/credential.exchange":             partnerPath(ns, name),
		"credlet.io/credential.exchange.transit-key": transitKey,
		"credlet.io/credential.exchange.context":     ns,
		"credlet.io/delivery":                        s.delivery,
		"credlet.io/refresh":                         "2s",
	}
	if s.sidecar != "" {
		ann["credlet.io/sidecar"] = s.sidecar
	}
	switch s.auth {
	case "approle":
		ann["credlet.io/auth"] = "approle"
		ann["credlet.io/approle-secret"] = approleSecret
	default:
		ann["credlet.io/role"] = "credlet-partner"
	}
	uid := int64(appUID)
	yes := true
	grace := int64(10)
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns,
			Labels:      map[string]string{"credlet.io/inject": "true", "test": "pods"},
			Annotations: ann,
		},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  new(bool),
			TerminationGracePeriodSeconds: &grace,
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: &yes, RunAsUser: &uid, RunAsGroup: &uid,
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: append([]corev1.Container{podcheckContainer("app", appUID)}, extra...),
		},
	}
}

// createPod creates p, deleting it when the test ends.
func createPod(t *testing.T, ctx context.Context, p *corev1.Pod) {
	t.Helper()
	if _, err := cl.Kube.Clientset.CoreV1().Pods(p.Namespace).Create(ctx, p, metav1.CreateOptions{}); err != nil {
		t.Fatalf("create pod %s/%s: %v", p.Namespace, p.Name, err)
	}
	t.Cleanup(func() { deletePod(p.Namespace, p.Name) })
}

func deletePod(ns, name string) {
	zero := int64(0)
	err := cl.Kube.Clientset.CoreV1().Pods(ns).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		fmt.Fprintf(os.Stderr, "delete pod %s/%s: %v\n", ns, name, err)
	}
}

// agentStatus returns the status of the pod's agent container (the
// sidecar, not classic mode's --once init container).
func agentStatus(p *corev1.Pod) (corev1.ContainerStatus, bool) {
	for _, st := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
		if st.Name == mutate.AgentName {
			return st, true
		}
	}
	return corev1.ContainerStatus{}, false
}

// containerPID finds the host pid of a container's first process from its
// container ID: the process whose cgroup path ends in that ID.
func containerPID(t *testing.T, containerID string) int {
	t.Helper()
	_, id, ok := strings.Cut(containerID, "://")
	if !ok || id == "" {
		t.Fatalf("container ID %q", containerID)
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cgroup")
	best := 0
	for _, f := range procs {
		b, err := os.ReadFile(f)
		if err != nil || !bytes.Contains(b, []byte(id)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(f)))
		if best == 0 || pid < best { // the container's init is its oldest process
			best = pid
		}
	}
	if best == 0 {
		t.Fatalf("no process in container %s", id)
	}
	return best
}

// procStatus reads /proc/PID/status as key → value.
func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok {
			out[k] = strings.TrimSpace(v)
		}
	}
	return out
}

// rootReadOnly reports whether pid's root mount is read-only.
func rootReadOnly(t *testing.T, pid int) bool {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/mountinfo", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 5 && f[4] == "/" {
			return strings.Split(f[5], ",")[0] == "ro"
		}
	}
	t.Fatalf("pid %d: no root mount in mountinfo", pid)
	return false
}

// agentMetrics scrapes the agent's /metrics at the pod's address and
// returns each sample line's value by its name and labels.
func agentMetrics(t *testing.T, ctx context.Context, p *corev1.Pod) map[string]float64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s:%d/metrics", p.Status.PodIP, mutate.AgentPort)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("agent metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// podLogs returns the logs of a container of pod ns/name.
func podLogs(ctx context.Context, ns, name, container string) (string, error) {
	b, err := cl.Kube.Clientset.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: container}).Do(ctx).Raw()
	return string(b), err
}
