package e2e

import (
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/credlet/credlet/internal/annotation"
	"github.com/credlet/credlet/internal/mutate"
	"github.com/credlet/credlet/internal/testenv"
)

// botPod is a labelled, annotated pod with two app containers and none of
// volumes, init containers or an automounted ServiceAccount token.
func botPod(name string, edit func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:   name,
			Labels: map[string]string{annotation.InjectLabel: "true", "app": "bot"},
			Annotations: map[string]string{
				"credlet.io/role":           "acme-bot",
				"credlet.io/credential.exa": "secret/partners/acme/exa",
			},
		},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: ptr.To(false),
			SecurityContext:              &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(1000)), RunAsGroup: ptr.To(int64(1000))},
			Containers: []corev1.Container{
				{Name: "bot", Image: "registry.example.test/acme-bot:1"},
				{Name: "web", Image: "registry.example.test/acme-web:1"},
			},
		},
	}
	if edit != nil {
		edit(p)
	}
	return p
}

// checkInjected asserts what every injected pod must hold.
func checkInjected(t *testing.T, p *corev1.Pod, targets ...string) {
	t.Helper()
	if p.Annotations[annotation.KeyStatus] != annotation.StatusInjected {
		t.Errorf("status annotation %q", p.Annotations[annotation.KeyStatus])
	}
	if len(p.Spec.InitContainers) == 0 || p.Spec.InitContainers[0].Name != mutate.AgentName {
		t.Fatalf("first init container is not the agent: %+v", p.Spec.InitContainers)
	}
	agent := p.Spec.InitContainers[0]
	if agent.RestartPolicy == nil || *agent.RestartPolicy != corev1.ContainerRestartPolicyAlways {
		t.Errorf("agent restartPolicy %v, want Always (native sidecar)", agent.RestartPolicy)
	}
	if pr := agent.StartupProbe; pr == nil || pr.HTTPGet == nil || pr.HTTPGet.Path != "/readyz" || pr.HTTPGet.Port.IntValue() != mutate.AgentPort {
		t.Errorf("startup probe %+v", agent.StartupProbe)
	}
	sc := agent.SecurityContext
	if sc == nil || !*sc.RunAsNonRoot || !*sc.ReadOnlyRootFilesystem || *sc.AllowPrivilegeEscalation || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) != 0 {
		t.Errorf("agent securityContext %+v", sc)
	}
	if got := agent.Resources.Requests[corev1.ResourceMemory]; got.Cmp(resource.MustParse("32Mi")) != 0 {
		t.Errorf("agent memory request %s", got.String())
	}
	vols := map[string]corev1.Volume{}
	for _, v := range p.Spec.Volumes {
		vols[v.Name] = v
	}
	if v := vols[mutate.VolumeSecrets]; v.EmptyDir == nil || v.EmptyDir.Medium != corev1.StorageMediumMemory || v.EmptyDir.SizeLimit == nil {
		t.Errorf("secrets volume %+v", v)
	}
	if v := vols[mutate.VolumeToken]; v.Projected == nil || v.Projected.Sources[0].ServiceAccountToken.Audience != "vault" ||
		*v.Projected.Sources[0].ServiceAccountToken.ExpirationSeconds != 600 {
		t.Errorf("token volume %+v", v)
	}
	for _, c := range p.Spec.Containers {
		wantMounts := slices.Contains(targets, c.Name)
		var mounts []string
		for _, m := range c.VolumeMounts {
			mounts = append(mounts, m.Name)
			if m.Name == mutate.VolumeToken {
				t.Errorf("app container %s mounts the Vault token", c.Name)
			}
		}
		if has := slices.Contains(mounts, mutate.VolumeRun) && slices.Contains(mounts, mutate.VolumeSecrets); has != wantMounts {
			t.Errorf("container %s mounts %v; want credlet mounts: %v", c.Name, mounts, wantMounts)
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		if wantMounts && (env[mutate.EnvSocket] != mutate.SocketPath || env[mutate.EnvSecretsDir] != mutate.SecretsDir) {
			t.Errorf("container %s env %v", c.Name, env)
		}
	}
}

func TestPodsAreInjected(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	pods := kube.Clientset.CoreV1().Pods(nsAcme)
	tests := []struct {
		name    string
		pod     *corev1.Pod
		targets []string
	}{
		{"bare pod, two containers", botPod("bare", nil), []string{"bot", "web"}},
		{"chosen containers, existing init container and volumes", botPod("chosen", func(p *corev1.Pod) {
			p.Annotations["credlet.io/containers"] = "bot"
			p.Annotations["credlet.io/credential.oauth"] = "secret/data/partners/acme/oauth"
			p.Annotations["credlet.io/credential.oauth.format"] = "json"
			p.Spec.InitContainers = []corev1.Container{{Name: "migrate", Image: "registry.example.test/migrate:1"}}
			p.Spec.Volumes = []corev1.Volume{{Name: "cache", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
			p.Spec.Containers[1].SecurityContext = &corev1.SecurityContext{RunAsUser: ptr.To(int64(2000))}
		}), []string{"bot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			created, err := pods.Create(ctx, tt.pod, metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			stored, err := pods.Get(ctx, created.Name, metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			checkInjected(t, stored, tt.targets...)
			args := strings.Join(stored.Spec.InitContainers[0].Args, " ")
			for _, want := range []string{"--credential=exa=secret/partners/acme/exa", "--role=acme-bot", "--allow-uid=1000", "--vault-addr=" + vault.Addr} {
				if !strings.Contains(args, want) {
					t.Errorf("agent args %q lack %q", args, want)
				}
			}
			// the apiserver defaulted and validated what the injector added
			if stored.Spec.InitContainers[0].TerminationMessagePath == "" {
				t.Error("agent container was not defaulted by the apiserver")
			}
		})
	}
}

// TestDeploymentTemplate: a Deployment is stored as written (the webhook
// sees pods only); the pod its ReplicaSet would create from the template is
// injected. (envtest runs no controller manager, so the test creates that
// pod the way the ReplicaSet controller does.)
func TestDeploymentTemplate(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	tmpl := botPod("", nil)
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "trader"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To(int32(2)),
			Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "bot"}},
			Template: corev1.PodTemplateSpec{ObjectMeta: tmpl.ObjectMeta, Spec: tmpl.Spec},
		},
	}
	stored, err := kube.Clientset.AppsV1().Deployments(nsAcme).Create(ctx, d, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create deployment: %v", err)
	}
	if len(stored.Spec.Template.Spec.InitContainers) != 0 || stored.Spec.Template.Annotations[annotation.KeyStatus] != "" {
		t.Error("the deployment's template was mutated")
	}
	for i := range 2 {
		pod := &corev1.Pod{ObjectMeta: *stored.Spec.Template.ObjectMeta.DeepCopy(), Spec: *stored.Spec.Template.Spec.DeepCopy()}
		pod.GenerateName = "trader-6d4cf56db6-"
		pod.Labels["pod-template-hash"] = "6d4cf56db6"
		created, err := kube.Clientset.CoreV1().Pods(nsAcme).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("create pod %d: %v", i, err)
		}
		checkInjected(t, created, "bot", "web")
	}
}

func TestDenialsReachTheClient(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	tests := []struct {
		name      string
		namespace string
		pod       *corev1.Pod
		want      []string
	}{
		{"typo", nsAcme, botPod("typo", func(p *corev1.Pod) { p.Annotations["credlet.io/rol"] = "x" }),
			[]string{`admission webhook "inject.credlet.io" denied the request`, "credlet.io/rol", "did you mean credlet.io/role?"}},
		{"bad value", nsAcme, botPod("badvalue", func(p *corev1.Pod) { p.Annotations["credlet.io/delivery"] = "carrier-pigeon" }),
			[]string{"credlet.io/delivery", "allowed: socket,files, socket, files"}},
		{"path outside the namespace's prefixes", nsAcme, botPod("outside", func(p *corev1.Pod) {
			p.Annotations["credlet.io/credential.exa"] = "secret/partners/zeta/exa"
		}), []string{"is outside what namespace", "secret/partners/acme"}},
		{"no user", nsAcme, botPod("nouser", func(p *corev1.Pod) { p.Spec.SecurityContext = nil }),
			[]string{"runAsUser", "credlet.io/uid"}},
		{"namespace not configured", nsOther, botPod("other", nil), []string{`namespace "e2e-other" may not use credlet`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pods := kube.Clientset.CoreV1().Pods(tt.namespace)
			_, err := pods.Create(ctx, tt.pod, metav1.CreateOptions{})
			if err == nil {
				t.Fatal("pod was admitted")
			}
			if !apierrors.IsForbidden(err) {
				t.Errorf("error is not Forbidden: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if _, err := pods.Get(ctx, tt.pod.Name, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
				t.Errorf("denied pod was stored (get: %v)", err)
			}
		})
	}
	body := scrapeMetrics(t)
	for _, want := range []string{`credlet_injector_admissions_total{result="denied"}`, `credlet_injector_admissions_total{result="injected"}`} {
		if !strings.Contains(body, want) || strings.Contains(body, want+" 0\n") {
			t.Errorf("metrics: %s missing or zero", want)
		}
	}
}

func TestUnlabelledPodsAreUntouched(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	for _, ns := range []string{nsAcme, nsOther} {
		pod := botPod("unlabelled", func(p *corev1.Pod) {
			delete(p.Labels, annotation.InjectLabel)
			p.Annotations["credlet.io/not-a-key"] = "would be denied if the webhook saw it"
		})
		created, err := kube.Clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s: create: %v", ns, err)
		}
		if len(created.Spec.InitContainers) != 0 || len(created.Spec.Volumes) != 0 || created.Annotations[annotation.KeyStatus] != "" {
			t.Errorf("%s: unlabelled pod was changed: %+v", ns, created.Spec)
		}
	}
}

func TestDryRunAndReinvocationSafe(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	pods := kube.Clientset.CoreV1().Pods(nsAcme)
	dry, err := pods.Create(ctx, botPod("dry", nil), metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	checkInjected(t, dry, "bot", "web")
	if _, err := pods.Get(ctx, "dry", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("dry-run pod stored: %v", err)
	}
	// an injected pod re-created from its own stored form (kubectl get -o
	// yaml | kubectl create) is admitted once more without a second agent
	again := dry.DeepCopy()
	again.ResourceVersion, again.UID, again.Name = "", "", "again"
	created, err := pods.Create(ctx, again, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("re-create: %v", err)
	}
	n := 0
	for _, c := range append(created.Spec.InitContainers, created.Spec.Containers...) {
		if c.Name == mutate.AgentName {
			n++
		}
	}
	if n != 1 || len(created.Spec.Volumes) != len(dry.Spec.Volumes) {
		t.Errorf("re-created pod has %d agents and %d volumes (want 1 and %d)", n, len(created.Spec.Volumes), len(dry.Spec.Volumes))
	}
}

func scrapeMetrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get(metricsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprint(string(b))
}

// TestOtherShapesPassValidation: classic mode, AppRole, files-only and
// socket-only pods are stored by the apiserver, so their shape is valid.
func TestOtherShapesPassValidation(t *testing.T) {
	testenv.NeedServers(t)
	ctx := t.Context()
	pods := kube.Clientset.CoreV1().Pods(nsAcme)
	tests := []struct {
		name  string
		edit  func(*corev1.Pod)
		check func(t *testing.T, p *corev1.Pod)
	}{
		{"classic sidecar, files only", func(p *corev1.Pod) {
			p.Annotations["credlet.io/sidecar"] = "classic"
			p.Annotations["credlet.io/delivery"] = "files"
		}, func(t *testing.T, p *corev1.Pod) {
			if p.Spec.InitContainers[0].Name != mutate.AgentInitName || !slices.Contains(p.Spec.InitContainers[0].Args, "--once") {
				t.Errorf("init container %s %v", p.Spec.InitContainers[0].Name, p.Spec.InitContainers[0].Args)
			}
			last := p.Spec.Containers[len(p.Spec.Containers)-1]
			if last.Name != mutate.AgentName || last.RestartPolicy != nil {
				t.Errorf("last container %s", last.Name)
			}
		}},
		{"approle, socket only, uid from annotation", func(p *corev1.Pod) {
			delete(p.Annotations, "credlet.io/role")
			p.Annotations["credlet.io/auth"] = "approle"
			p.Annotations["credlet.io/approle-secret"] = "acme-approle"
			p.Annotations["credlet.io/delivery"] = "socket"
			p.Annotations["credlet.io/uid"] = "1000"
			p.Spec.SecurityContext = nil
		}, func(t *testing.T, p *corev1.Pod) {
			args := strings.Join(p.Spec.InitContainers[0].Args, " ")
			if !strings.Contains(args, "--auth=approle") || !strings.Contains(args, "--secret-id-file=/credlet/approle/secret_id") || !strings.Contains(args, "--secrets-dir= ") {
				t.Errorf("args %s", args)
			}
			for _, v := range p.Spec.Volumes {
				if v.Name == mutate.VolumeToken || v.Name == mutate.VolumeSecrets {
					t.Errorf("unexpected volume %s", v.Name)
				}
			}
		}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			created, err := pods.Create(ctx, botPod(fmt.Sprintf("shape-%d", i), tt.edit), metav1.CreateOptions{})
			if err != nil {
				t.Fatalf("create: %v", err)
			}
			if created.Annotations[annotation.KeyStatus] != annotation.StatusInjected {
				t.Fatal("not injected")
			}
			tt.check(t, created)
		})
	}
}
