package pods

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/credlet/credlet/internal/mutate"
)

// loopStats is podcheck's /loop/stats answer.
type loopStats struct {
	FileReads      int64  `json:"file_reads"`
	FileFailures   int64  `json:"file_failures"`
	SocketReads    int64  `json:"socket_reads"`
	SocketFailures int64  `json:"socket_failures"`
	LastFailure    string `json:"last_failure"`
}

// readyInjected creates an injected pod (native sidecar, both deliveries,
// Kubernetes auth unless s says otherwise), waits until it is Ready and
// returns it.
func readyInjected(t *testing.T, ctx context.Context, ns, name string, s shape, extra ...corev1.Container) *corev1.Pod {
	t.Helper()
	ensureNamespace(t, ctx, ns)
	putCreds(t, ctx, ns, name, map[string]string{"api_key": "FAKE-" + name + "-key", "api_secret": "FAKE-" + name + "-secret"})
	createPod(t, ctx, injectedPod(ns, name, s, extra...))
	return waitPod(t, ctx, ns, name, "Ready", podReady)
}

var both = shape{"native", "socket,files", "kubernetes"}

// TestJob: a Job whose pod has the agent injected (native sidecar) reads
// its credential and completes; its pod ends Succeeded, the sidecar
// stopped by the kubelet.
func TestJob(t *testing.T) {
	cs := kube(t)
	ctx := context.Background()
	ns := "pods"
	ensureNamespace(t, ctx, ns)
	putCreds(t, ctx, ns, "jobcred", map[string]string{"api_key": "FAKE-job-key"})
	tmpl := injectedPod(ns, "", both)
	tmpl.Annotations = map[string]string{
		"credlet.io/role":                           "credlet-partner",
		"credlet.io/credential.jobcred":             partnerPath(ns, "jobcred"),
		"credlet.io/credential.jobcred.transit-key": transitKey,
		"credlet.io/credential.jobcred.context":     ns,
	}
	app := podcheckContainer("work", appUID)
	app.Args, app.ReadinessProbe = []string{"--once=jobcred"}, nil
	tmpl.Spec.Containers = []corev1.Container{app}
	tmpl.Spec.RestartPolicy = corev1.RestartPolicyNever
	backoff := int32(0)
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{Name: "readonce", Namespace: ns},
		Spec: batchv1.JobSpec{
			BackoffLimit: &backoff,
			Template:     corev1.PodTemplateSpec{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec},
		},
	}
	begin := time.Now()
	if _, err := cs.BatchV1().Jobs(ns).Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bg := metav1.DeletePropagationBackground
	t.Cleanup(func() {
		_ = cs.BatchV1().Jobs(ns).Delete(context.Background(), "readonce", metav1.DeleteOptions{PropagationPolicy: &bg})
	})
	wctx, cancel := context.WithTimeout(ctx, podWait)
	defer cancel()
	for {
		j, err := cs.BatchV1().Jobs(ns).Get(wctx, "readonce", metav1.GetOptions{})
		if err == nil && (j.Status.Succeeded > 0 || j.Status.Failed > 0) {
			if j.Status.Failed > 0 {
				t.Fatalf("job failed: %+v; %s", j.Status, cl.PodProblems(ctx, ns))
			}
			break
		}
		select {
		case <-wctx.Done():
			t.Fatalf("job not complete after %v: %v; %s", podWait, err, cl.PodProblems(ctx, ns))
		case <-time.After(time.Second):
		}
	}
	t.Logf("job complete in %v", time.Since(begin).Round(100*time.Millisecond))
	pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: "job-name=readonce"})
	if err != nil || len(pods.Items) != 1 {
		t.Fatalf("job pods: %v, %d", err, len(pods.Items))
	}
	p := &pods.Items[0]
	p = waitPod(t, ctx, ns, p.Name, "Succeeded", func(p *corev1.Pod) bool { return p.Status.Phase == corev1.PodSucceeded })
	log, err := podLogs(ctx, ns, p.Name, "work")
	if err != nil || !strings.Contains(log, "podcheck: read jobcred version") {
		t.Errorf("the job's container did not read its credential: %v\n%s", err, log)
	}
}

// TestAgentKilled: the agent process killed inside a running pod; the
// kubelet restarts the sidecar, reads of the files never fail meanwhile and
// socket reads through agent/client recover without an error reaching the
// app.
func TestAgentKilled(t *testing.T) {
	kube(t)
	ctx := context.Background()
	p := readyInjected(t, ctx, "pods", "killed", both)
	st, _ := agentStatus(p)
	var started map[string]any
	probeGet(t, ctx, p, "/loop/start?name=exchange&file=/credlet/secrets/exchange/api_key", &started)
	time.Sleep(2 * time.Second)
	pid := containerPID(t, st.ContainerID)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill agent pid %d: %v", pid, err)
	}
	killed := time.Now()
	p = waitPod(t, ctx, "pods", "killed", "Ready with the agent restarted", func(p *corev1.Pod) bool {
		st, ok := agentStatus(p)
		return ok && st.RestartCount >= 1 && st.Ready && podReady(p)
	})
	t.Logf("agent restarted and Ready %v after the kill", time.Since(killed).Round(100*time.Millisecond))
	time.Sleep(2 * time.Second) // reads on the new agent
	var stats loopStats
	probeGet(t, ctx, p, "/loop/stop", &stats)
	t.Logf("reads during the kill: %+v", stats)
	if stats.FileReads < 100 || stats.SocketReads < 10 {
		t.Errorf("too few reads to tell: %+v", stats)
	}
	if stats.FileFailures != 0 || stats.SocketFailures != 0 {
		t.Errorf("reads failed while the agent restarted: %+v", stats)
	}
	for _, cs := range p.Status.ContainerStatuses {
		if cs.RestartCount != 0 {
			t.Errorf("app container %s restarted", cs.Name)
		}
	}
}

// TestSecondUID: a second container in the pod running as another uid (in
// the app's group, so the socket's 0660 lets it connect) gets 403
// (forbidden) from the socket and EACCES on the 0400 files. The injector
// refuses a pod whose credential containers run as different users, so
// the pod names the app in credlet.io/containers and the second container
// mounts the agent's volumes itself.
func TestSecondUID(t *testing.T) {
	kube(t)
	ctx := context.Background()
	other := podcheckContainer("other", appUID+1)
	gid := int64(appUID)
	other.SecurityContext.RunAsGroup = &gid
	other.Args = []string{"--listen=:8081", "--socket=" + mutate.SocketPath}
	other.ReadinessProbe.HTTPGet.Port = intstr.FromInt32(8081)
	other.VolumeMounts = []corev1.VolumeMount{
		{Name: mutate.VolumeSecrets, MountPath: mutate.SecretsDir, ReadOnly: true},
		{Name: mutate.VolumeRun, MountPath: mutate.RunDir, ReadOnly: true},
	}
	ensureNamespace(t, ctx, "pods")
	putCreds(t, ctx, "pods", "seconduid", map[string]string{"api_key": "FAKE-seconduid-key", "api_secret": "FAKE-seconduid-secret"})
	pod := injectedPod("pods", "seconduid", both, other)
	pod.Annotations["credlet.io/containers"] = "app"
	createPod(t, ctx, pod)
	p := waitPod(t, ctx, "pods", "seconduid", "Ready", podReady)
	var own, theirs struct {
		OK     bool   `json:"ok"`
		Status int    `json:"status"`
		Code   string `json:"code"`
		Errno  string `json:"errno"`
		Error  string `json:"error"`
	}
	probeGet(t, ctx, p, "/socket?name=exchange", &own)
	if !own.OK {
		t.Fatalf("the app's own uid cannot read: %+v", own)
	}
	otherAddr := fmt.Sprintf("%s:8081", p.Status.PodIP)
	probeGetAddr(t, ctx, otherAddr, "/socket?name=exchange", &theirs)
	if theirs.OK || theirs.Status != 403 || theirs.Code != "forbidden" {
		t.Errorf("uid %d over the socket: %+v, want 403 forbidden", appUID+1, theirs)
	}
	theirs.OK, theirs.Errno = true, ""
	probeGetAddr(t, ctx, otherAddr, "/file?path=/credlet/secrets/exchange/api_key", &theirs)
	if theirs.OK || theirs.Errno != "EACCES" {
		t.Errorf("uid %d reading the file: %+v, want EACCES", appUID+1, theirs)
	}
}

// TestAgentPosture: inside the agent's container, as the kernel sees its
// process: not root, no capabilities (in a namespace that does not allow
// IPC_LOCK), the runtime's default seccomp filter, no_new_privs, a
// read-only root; and credlet_memory_locked says what it locked within
// the default resources.
func TestAgentPosture(t *testing.T) {
	kube(t)
	ctx := context.Background()
	p := readyInjected(t, ctx, "pods", "posture", both)
	st, _ := agentStatus(p)
	pid := containerPID(t, st.ContainerID)
	s := procStatus(t, pid)
	uid := strings.Fields(s["Uid"])
	if len(uid) == 0 || uid[0] == "0" || uid[0] != strconv.Itoa(appUID) {
		t.Errorf("agent uid %q, want %d (the app's)", s["Uid"], appUID)
	}
	if s["CapEff"] != "0000000000000000" || s["CapPrm"] != "0000000000000000" {
		t.Errorf("agent capabilities: effective %s permitted %s, want none", s["CapEff"], s["CapPrm"])
	}
	if s["Seccomp"] != "2" || s["NoNewPrivs"] != "1" {
		t.Errorf("agent seccomp %s no_new_privs %s, want 2 (filter) and 1", s["Seccomp"], s["NoNewPrivs"])
	}
	if !rootReadOnly(t, pid) {
		t.Error("agent root file system is writable")
	}
	m := agentMetrics(t, ctx, p)
	locked := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, "credlet_memory_locked{") {
			locked[k] = v
		}
	}
	t.Logf("credlet_memory_locked: %v; VmLck %s, VmRSS %s", locked, s["VmLck"], s["VmRSS"])
	if locked[`credlet_memory_locked{scope="secretmem"}`] <= 0 && locked[`credlet_memory_locked{scope="buffers"}`] <= 0 {
		t.Errorf("nothing locked for the credentials (memfd_secret or mlocked buffers): %v", locked)
	}
}

// TestReadBurst: 100,000 socket reads from the app, in a namespace whose
// agents the injector grants IPC_LOCK (for mlockall) and in one where it
// does not: the agent is not OOM-killed and its peak RSS stays under its
// memory limit; RSS, capabilities and what it locked are reported.
func TestReadBurst(t *testing.T) {
	kube(t)
	ctx := context.Background()
	for _, ns := range []string{"pods-ipc", "pods"} {
		t.Run(ns, func(t *testing.T) {
			p := readyInjected(t, ctx, ns, "burst", both)
			st, _ := agentStatus(p)
			pid := containerPID(t, st.ContainerID)
			var out struct {
				Reads      int64   `json:"reads"`
				Errors     int64   `json:"errors"`
				Seconds    float64 `json:"seconds"`
				FirstError string  `json:"first_error"`
			}
			probeGet(t, ctx, p, "/burst?name=exchange&n=100000&c=4", &out)
			s := procStatus(t, pid)
			m := agentMetrics(t, ctx, p)
			now, err := cl.Kube.Clientset.CoreV1().Pods(ns).Get(ctx, "burst", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			st, _ = agentStatus(now)
			limit := st.Resources
			t.Logf("%d reads in %.1fs (%d errors); agent VmRSS %s VmHWM %s VmLck %s; mlockall=%v; limits %v; restarts %d",
				out.Reads, out.Seconds, out.Errors, s["VmRSS"], s["VmHWM"], s["VmLck"], m[`credlet_memory_locked{scope="process"}`], limit, st.RestartCount)
			if out.Reads != 100000 || out.Errors != 0 {
				t.Errorf("burst: %+v", out)
			}
			if st.RestartCount != 0 || (st.LastTerminationState.Terminated != nil && st.LastTerminationState.Terminated.Reason == "OOMKilled") {
				t.Errorf("the agent restarted during the burst: %+v", st.LastTerminationState)
			}
			hwm := kib(s["VmHWM"])
			memLimit := int64(64 << 10) // KiB, the injector's default limit
			if l := now.Spec.InitContainers; len(l) > 0 {
				for _, c := range l {
					if c.Name == st.Name {
						memLimit = c.Resources.Limits.Memory().Value() >> 10
					}
				}
			}
			if hwm <= 0 || hwm >= memLimit {
				t.Errorf("agent peak RSS %d KiB, limit %d KiB", hwm, memLimit)
			}
			// The injector grants IPC_LOCK where the namespace allows it: the
			// capability is in the agent's bounding set there and only there.
			// Whether the agent could use it (mlockall) is logged: a non-root
			// container under containerd gets added capabilities in its
			// bounding set only, not in its effective set.
			const capIPCLock = 1 << 14
			bnd, _ := strconv.ParseUint(s["CapBnd"], 16, 64)
			if got, want := bnd&capIPCLock != 0, ns == "pods-ipc"; got != want {
				t.Errorf("IPC_LOCK in the agent's bounding set: %v, want %v (CapBnd %s)", got, want, s["CapBnd"])
			}
			log, _ := podLogs(ctx, ns, "burst", st.Name)
			for _, l := range strings.Split(log, "\n") {
				if strings.Contains(l, "memory protection") {
					t.Logf("agent capabilities: effective %s permitted %s bounding %s; %s", s["CapEff"], s["CapPrm"], s["CapBnd"], l)
				}
			}
		})
	}
}

// kib parses "1234 kB".
func kib(s string) int64 {
	v, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(s), " kB"), 10, 64)
	return v
}

// TestVaultOutage: Vault stopped (SIGSTOP: it accepts connections and
// answers nothing) for 30 s: the pods stay Ready and keep reading.
func TestVaultOutage(t *testing.T) {
	kube(t)
	ctx := context.Background()
	p := readyInjected(t, ctx, "pods", "outage", both)
	var started map[string]any
	probeGet(t, ctx, p, "/loop/start?name=exchange&file=/credlet/secrets/exchange/api_key", &started)
	if err := cl.Vault.Pause(); err != nil {
		t.Fatal(err)
	}
	paused := true
	defer func() {
		if paused {
			_ = cl.Vault.Resume()
		}
	}()
	end := time.Now().Add(30 * time.Second)
	for time.Now().Before(end) {
		now, err := cl.Kube.Clientset.CoreV1().Pods("pods").Get(ctx, "outage", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !podReady(now) {
			t.Fatalf("pod not Ready %v into the Vault outage: %s", 30*time.Second-time.Until(end), cl.PodProblems(ctx, "pods"))
		}
		time.Sleep(time.Second)
	}
	if err := cl.Vault.Resume(); err != nil {
		t.Fatal(err)
	}
	paused = false
	var stats loopStats
	probeGet(t, ctx, p, "/loop/stop", &stats)
	t.Logf("reads during the outage: %+v", stats)
	if stats.FileFailures != 0 || stats.SocketFailures != 0 || stats.SocketReads < 100 || stats.FileReads < 100 {
		t.Errorf("reads failed or stalled during the Vault outage: %+v", stats)
	}
}

// TestPodDeleted: the pod deleted; its agent exits within the grace
// period and the pod's tmpfs is gone from the node.
func TestPodDeleted(t *testing.T) {
	cs := kube(t)
	ctx := context.Background()
	p := readyInjected(t, ctx, "pods", "deleted", both)
	uid := string(p.UID)
	if n := tmpfsMounts(t, uid); n == 0 {
		t.Fatalf("no tmpfs of pod %s on the node before deletion", uid)
	}
	grace := int64(10)
	begin := time.Now()
	if err := cs.CoreV1().Pods("pods").Delete(ctx, "deleted", metav1.DeleteOptions{GracePeriodSeconds: &grace}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Duration(grace)*time.Second + 30*time.Second)
	for {
		_, err := cs.CoreV1().Pods("pods").Get(ctx, "deleted", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pod still there %v after deletion: %s", time.Since(begin), cl.PodProblems(ctx, "pods"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(begin)
	t.Logf("pod gone %v after deletion (grace %ds)", took.Round(100*time.Millisecond), grace)
	if took > time.Duration(grace)*time.Second+5*time.Second {
		t.Errorf("the pod took %v to go, more than its grace period %ds (+5 s)", took, grace)
	}
	for end := time.Now().Add(30 * time.Second); tmpfsMounts(t, uid) != 0; {
		if time.Now().After(end) {
			t.Fatalf("pod %s's tmpfs still mounted on the node 30 s after the pod was gone", uid)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// tmpfsMounts counts tmpfs mounts of pod uid's volumes on the node.
func tmpfsMounts(t *testing.T, uid string) int {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.Contains(line, "/pods/"+uid+"/volumes/") && strings.Contains(line, " - tmpfs ") {
			n++
		}
	}
	return n
}
