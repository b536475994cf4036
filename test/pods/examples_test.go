package pods

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// exampleRefresh is the agent's default --refresh, which the example
// Deployments keep; the agent jitters it by ±10%.
const exampleRefresh = 10 * time.Second

// examplePods applies examples/deployments/tradingbot-socket.yaml and
// legacy-app-files.yaml as they are (namespace acme, their credentials
// written first as the examples' README says) and returns each
// Deployment's Ready pod.
func examplePods(t *testing.T, ctx context.Context) (bot, legacy *corev1.Pod) {
	t.Helper()
	ensureNamespace(t, ctx, "acme")
	if v := putCreds(t, ctx, "acme", "zerodha", map[string]string{"api_key": "FAKE-zerodha-key-1", "api_secret": "FAKE-zerodha-secret-1"}); v != 1 {
		t.Fatalf("secret/partners/acme/zerodha: version %d, want a new path (1)", v)
	}
	if v := putCreds(t, ctx, "acme", "exchange", map[string]string{"api_key": "FAKE-exchange-key-1", "api_secret": "FAKE-exchange-secret-1"}); v != 1 {
		t.Fatalf("secret/partners/acme/exchange: version %d, want a new path (1)", v)
	}
	for _, f := range []string{"tradingbot-socket.yaml", "legacy-app-files.yaml"} {
		if err := cl.ApplyFile(ctx, filepath.Join(root, "examples/deployments", f)); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, d := range []string{"tradingbot", "legacy-app"} {
			_ = cl.Kube.Clientset.AppsV1().Deployments("acme").Delete(context.Background(), d, metav1.DeleteOptions{})
		}
	})
	return deploymentPod(t, ctx, "acme", "tradingbot"), deploymentPod(t, ctx, "acme", "legacy-app")
}

// deploymentPod waits for the one Ready pod of Deployment ns/name
// (selected by app.kubernetes.io/name) and returns it.
func deploymentPod(t *testing.T, ctx context.Context, ns, name string) *corev1.Pod {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, podWait)
	defer cancel()
	sel := "app.kubernetes.io/name=" + name
	for {
		pods, err := cl.Kube.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: sel})
		if err == nil {
			for i := range pods.Items {
				if p := &pods.Items[i]; podReady(p) && p.DeletionTimestamp == nil {
					return p
				}
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("Deployment %s/%s: no Ready pod after %v: %v; %s", ns, name, podWait, err, cl.PodProblems(context.Background(), ns))
		case <-time.After(time.Second):
		}
	}
}

// TestExampleDeployments: the example Deployments become Running pods with
// the agent injected; each app container started only after its agent's
// startup probe had passed (the pod's Initialized condition, which a native
// sidecar's startup probe gates, is no later than the app's start, and the
// legacy app found its file at its first look); the Go bot reads over the
// socket and the legacy app reads files. Then a rotation in Vault reaches
// both apps without a restart within the refresh interval (+10% jitter)
// + 1 s.
func TestExampleDeployments(t *testing.T) {
	kube(t)
	ctx := context.Background()
	begin := time.Now()
	bot, legacy := examplePods(t, ctx)
	t.Logf("both example pods Ready in %v", time.Since(begin).Round(100*time.Millisecond))

	for _, p := range []*corev1.Pod{bot, legacy} {
		st, ok := agentStatus(p)
		if !ok {
			t.Fatalf("pod %s has no credlet-agent container: not injected", p.Name)
		}
		if st.State.Running == nil || st.Started == nil || !*st.Started {
			t.Errorf("pod %s: agent not running and started: %+v", p.Name, st.State)
		}
		var initialized time.Time
		for _, c := range p.Status.Conditions {
			if c.Type == corev1.PodInitialized && c.Status == corev1.ConditionTrue {
				initialized = c.LastTransitionTime.Time
			}
		}
		if initialized.IsZero() {
			t.Fatalf("pod %s: no Initialized condition", p.Name)
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.State.Running == nil {
				t.Fatalf("pod %s: container %s not running", p.Name, cs.Name)
			}
			started := cs.State.Running.StartedAt.Time
			if started.Before(initialized) || started.Before(st.State.Running.StartedAt.Time) {
				t.Errorf("pod %s: %s started at %v, before the agent was started (%v) and its startup probe passed (Initialized %v)",
					p.Name, cs.Name, started, st.State.Running.StartedAt.Time, initialized)
			}
		}
	}
	botLog := waitLog(t, ctx, bot, "bot", "tradingbot: using zerodha version 1")
	if !strings.Contains(botLog, "signed fake order") && !strings.Contains(waitLog(t, ctx, bot, "bot", "signed fake order"), "signed fake order") {
		t.Errorf("the bot signs no order:\n%s", botLog)
	}
	legacyLog := waitLog(t, ctx, legacy, "app", "legacy-app: loaded exchange version 1")
	if strings.Contains(legacyLog, "not there yet") {
		t.Errorf("the legacy app started before its files were there:\n%s", legacyLog)
	}

	// The rotation.
	rotatedAt := time.Now()
	rotateCreds(t, ctx, "acme", "zerodha", map[string]string{"api_key": "FAKE-zerodha-key-2"})
	rotateCreds(t, ctx, "acme", "exchange", map[string]string{"api_key": "FAKE-exchange-key-2"})
	limit := exampleRefresh + exampleRefresh/10 + time.Second
	for _, w := range []struct {
		p         *corev1.Pod
		container string
		line      string
	}{
		{bot, "bot", "now using zerodha version 2 (was 1), no restart"},
		{legacy, "app", "reloaded exchange: now version 2 (was 1), no restart"},
	} {
		took := waitLogWithin(t, ctx, w.p, w.container, w.line, rotatedAt, 2*limit)
		t.Logf("%s: rotation seen after %v (limit %v)", w.p.Name, took.Round(100*time.Millisecond), limit)
		if took > limit {
			t.Errorf("%s: the rotation reached the app after %v, more than refresh + 10%% + 1 s = %v", w.p.Name, took, limit)
		}
	}
	for _, p := range []*corev1.Pod{bot, legacy} {
		now, err := cl.Kube.Clientset.CoreV1().Pods("acme").Get(ctx, p.Name, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, cs := range append(now.Status.InitContainerStatuses, now.Status.ContainerStatuses...) {
			if cs.RestartCount != 0 {
				t.Errorf("pod %s: container %s restarted %d times", p.Name, cs.Name, cs.RestartCount)
			}
		}
	}
}

// waitLog waits until a container's log holds line and returns the log.
func waitLog(t *testing.T, ctx context.Context, p *corev1.Pod, container, line string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var log string
	var err error
	for {
		log, err = podLogs(ctx, p.Namespace, p.Name, container)
		if err == nil && strings.Contains(log, line) {
			return log
		}
		select {
		case <-ctx.Done():
			t.Fatalf("pod %s container %s: no %q in its log (%v):\n%s", p.Name, container, line, err, log)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// waitLogWithin waits up to max after since for line in a container's log
// and returns when the runtime recorded that line (its log timestamp),
// counted from since: the log is polled, but the poll's delay does not
// count.
func waitLogWithin(t *testing.T, ctx context.Context, p *corev1.Pod, container, line string, since time.Time, max time.Duration) time.Duration {
	t.Helper()
	var log string
	for {
		b, err := cl.Kube.Clientset.CoreV1().Pods(p.Namespace).GetLogs(p.Name, &corev1.PodLogOptions{Container: container, Timestamps: true}).Do(ctx).Raw()
		log = string(b)
		if err == nil {
			for _, l := range strings.Split(log, "\n") {
				ts, text, ok := strings.Cut(l, " ")
				if !ok || !strings.Contains(text, line) {
					continue
				}
				at, perr := time.Parse(time.RFC3339Nano, ts)
				if perr != nil {
					t.Fatalf("log timestamp %q: %v", ts, perr)
				}
				return at.Sub(since)
			}
		}
		if time.Since(since) > max {
			t.Fatalf("pod %s container %s: no %q within %v:\n%s", p.Name, container, line, max, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
