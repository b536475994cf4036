package mutate

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/credlet/credlet/internal/annotation"
)

// podWith returns a valid pod for namespace partner-acme, changed by edit.
func podWith(edit func(p *corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name:   "bot",
			Labels: map[string]string{annotation.InjectLabel: "true"},
			Annotations: map[string]string{
				"credlet.io/role":           "acme-bot",
				"credlet.io/credential.exa": "secret/partners/acme/exa",
			},
		},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: ptr.To(int64(1000))},
			Containers:      []corev1.Container{{Name: "bot", Image: "registry.example.test/bot:1"}},
		},
	}
	if edit != nil {
		edit(p)
	}
	return p
}

func TestMutateDenials(t *testing.T) {
	cfg := testConfig(t)
	tests := []struct {
		name      string
		namespace string
		edit      func(p *corev1.Pod)
		want      []string
	}{
		{"namespace not configured", "default", nil, []string{`namespace "default" may not use credlet`}},
		{"path outside prefixes", "partner-acme", func(p *corev1.Pod) {
			p.Annotations["credlet.io/credential.exa"] = "secret/partners/zeta/exa"
		}, []string{"credlet.io/credential.exa", `"secret/partners/zeta/exa" is outside`, "secret/partners/acme"}},
		{"prefix is segment-wise", "partner-acme", func(p *corev1.Pod) {
			p.Annotations["credlet.io/credential.exa"] = "secret/partners/acme-evil/exa"
		}, []string{"is outside"}},
		{"bad annotation", "partner-acme", func(p *corev1.Pod) { p.Annotations["credlet.io/delivery"] = "smoke" }, []string{"credlet.io/delivery", "allowed: socket,files, socket, files"}},
		{"no runAsUser", "partner-acme", func(p *corev1.Pod) { p.Spec.SecurityContext = nil }, []string{`container "bot" has no securityContext.runAsUser`, "credlet.io/uid"}},
		{"root", "partner-acme", func(p *corev1.Pod) { p.Spec.SecurityContext.RunAsUser = ptr.To(int64(0)) }, []string{"runs as root"}},
		{"different users", "partner-acme", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "web", Image: "x", SecurityContext: &corev1.SecurityContext{RunAsUser: ptr.To(int64(2000))}})
		}, []string{"different users", `"bot" as 1000`, `"web" as 2000`, "credlet.io/containers"}},
		{"uid annotation contradicts", "partner-acme", func(p *corev1.Pod) { p.Annotations["credlet.io/uid"] = "1234" }, []string{"credlet.io/uid=1234", `"bot" runs as user 1000`}},
		{"gid annotation contradicts", "partner-acme", func(p *corev1.Pod) {
			p.Spec.SecurityContext.RunAsGroup = ptr.To(int64(5))
			p.Annotations["credlet.io/gid"] = "6"
		}, []string{"credlet.io/gid=6", "group 5"}},
		{"unknown container", "partner-acme", func(p *corev1.Pod) { p.Annotations["credlet.io/containers"] = "bott" }, []string{`names "bott"`, "containers: bot"}},
		{"agent already there", "partner-acme", func(p *corev1.Pod) {
			p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: AgentName, Image: "x"})
		}, []string{`already has a container named "credlet-agent"`}},
		{"volume clash", "partner-acme", func(p *corev1.Pod) {
			p.Spec.Volumes = []corev1.Volume{{Name: VolumeSecrets}}
		}, []string{`volume named "credlet-secrets"`}},
		{"port clash", "partner-acme", func(p *corev1.Pod) {
			p.Spec.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: AgentPort}}
		}, []string{"port 9102"}},
		{"mount clash", "partner-acme", func(p *corev1.Pod) {
			p.Spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "data", MountPath: "/credlet"}}
		}, []string{`already mounts "/credlet"`}},
		{"env clash", "partner-acme", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: EnvSocket, Value: "/tmp/other.sock"}}
		}, []string{"sets env CREDLET_SOCKET"}},
		{"signal needs shared pid namespace", "partner-acme", func(p *corev1.Pod) { p.Annotations["credlet.io/notify"] = "signal:SIGHUP:bot" }, []string{"shareProcessNamespace"}},
		{"host network", "partner-acme", func(p *corev1.Pod) { p.Spec.HostNetwork = true }, []string{"hostNetwork", "9102"}},
		{"windows", "partner-acme", func(p *corev1.Pod) { p.Spec.OS = &corev1.PodOS{Name: corev1.Windows} }, []string{"Linux only"}},
		{"status without agent", "partner-acme", func(p *corev1.Pod) { p.Annotations[annotation.KeyStatus] = annotation.StatusInjected }, []string{"no credlet-agent container"}},
		{"vault-addr not approved", "partner-acme", func(p *corev1.Pod) {
			p.Annotations["credlet.io/vault-addr"] = "https://vault.attacker.example.test:8200"
		}, []string{
			"credlet.io/vault-addr", `"https://vault.attacker.example.test:8200"`, "service-account token", "allowedVaultAddrs", "https://vault.vault.svc:8200"}},
		{"vault-addr approved elsewhere only", "partner-acme", func(p *corev1.Pod) { p.Annotations["credlet.io/vault-addr"] = "https://vault-dr.example.test:8200" }, []string{"credlet.io/vault-addr"}},
		{"status with another value", "partner-acme", func(p *corev1.Pod) { p.Annotations[annotation.KeyStatus] = "pending" }, []string{`"pending"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := podWith(tt.edit)
			before := pod.DeepCopy()
			got, err := Mutate(pod, tt.namespace, cfg)
			if err == nil {
				t.Fatalf("Mutate allowed the pod: %+v", got)
			}
			if !errors.Is(err, ErrDenied) && !errors.Is(err, annotation.ErrInvalid) {
				t.Errorf("error %v is neither ErrDenied nor annotation.ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
			if !equalPods(before, pod) {
				t.Error("Mutate changed its input")
			}
		})
	}
}

// TestMutateVaultAddrAllowList: credlet.io/vault-addr may name the
// namespace's own Vault address or one listed in allowedVaultAddrs
// (compared without case in scheme and host, and without a trailing
// slash); the agent gets the address the annotation gave.
func TestMutateVaultAddrAllowList(t *testing.T) {
	cfg := testConfig(t)
	tests := []struct {
		name, namespace, addr string
	}{
		{"the namespace's default", "partner-acme", "https://vault.vault.svc:8200"},
		{"default, trailing slash and case", "partner-acme", "HTTPS://Vault.Vault.svc:8200/"},
		{"listed", "dev", "https://vault-dr.example.test:8200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := podWith(func(p *corev1.Pod) {
				p.Annotations["credlet.io/vault-addr"] = tt.addr
				if tt.namespace == "dev" {
					p.Annotations["credlet.io/credential.exa"] = "kv/dev/exa"
				}
			})
			got, err := Mutate(pod, tt.namespace, cfg)
			if err != nil {
				t.Fatal(err)
			}
			var agent *corev1.Container
			for i := range got.Spec.InitContainers {
				if got.Spec.InitContainers[i].Name == AgentName {
					agent = &got.Spec.InitContainers[i]
				}
			}
			for i := range got.Spec.Containers {
				if got.Spec.Containers[i].Name == AgentName {
					agent = &got.Spec.Containers[i]
				}
			}
			if agent == nil || !strings.Contains(strings.Join(agent.Args, " "), "--vault-addr="+tt.addr) {
				t.Fatalf("agent args do not carry --vault-addr=%s: %v", tt.addr, agent)
			}
		})
	}
}

func equalPods(a, b *corev1.Pod) bool { return a.String() == b.String() }

func TestMutateAllowsUnchanged(t *testing.T) {
	cfg := testConfig(t)
	tests := []struct {
		name string
		edit func(p *corev1.Pod)
	}{
		{"no label", func(p *corev1.Pod) { delete(p.Labels, annotation.InjectLabel) }},
		{"label not true", func(p *corev1.Pod) { p.Labels[annotation.InjectLabel] = "false" }},
		{"already injected", func(p *corev1.Pod) {
			p.Annotations[annotation.KeyStatus] = annotation.StatusInjected
			p.Spec.InitContainers = []corev1.Container{{Name: AgentName, Image: "x"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Mutate(podWith(tt.edit), "partner-acme", cfg)
			if err != nil || got != nil {
				t.Fatalf("Mutate = %v, %v; want nil, nil", got, err)
			}
		})
	}
}

func TestMutateUIDFromAnnotation(t *testing.T) {
	pod := podWith(func(p *corev1.Pod) {
		p.Spec.SecurityContext = nil
		p.Annotations["credlet.io/uid"] = "4242"
		p.Annotations["credlet.io/gid"] = "4343"
	})
	got, err := Mutate(pod, "partner-acme", testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	sc := got.Spec.InitContainers[0].SecurityContext
	if *sc.RunAsUser != 4242 || *sc.RunAsGroup != 4343 {
		t.Errorf("agent runs as %d:%d", *sc.RunAsUser, *sc.RunAsGroup)
	}
	args := strings.Join(got.Spec.InitContainers[0].Args, " ")
	for _, w := range []string{"--allow-uid=4242", "--file-uid=4242", "--file-gid=4343"} {
		if !strings.Contains(args, w) {
			t.Errorf("args %q lack %q", args, w)
		}
	}
	if got.Spec.Containers[0].SecurityContext != nil {
		t.Error("the app container's securityContext was changed")
	}
}

func TestHandleNonPods(t *testing.T) {
	h := testHandler(t)
	raw := []byte(`{"metadata":{"name":"x"}}`)
	tests := []struct {
		name     string
		edit     func(r *admissionv1.AdmissionRequest)
		allowed  bool
		wantCode int32
	}{
		{"update", func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Update }, true, http.StatusOK},
		{"delete without object", func(r *admissionv1.AdmissionRequest) {
			r.Operation = admissionv1.Delete
			r.Object.Raw, r.OldObject.Raw = nil, raw
		}, true, http.StatusOK},
		{"connect", func(r *admissionv1.AdmissionRequest) { r.Operation = admissionv1.Connect }, true, http.StatusOK},
		{"other kind", func(r *admissionv1.AdmissionRequest) { r.Kind.Kind = "Deployment"; r.Resource.Resource = "deployments" }, true, http.StatusOK},
		{"subresource", func(r *admissionv1.AdmissionRequest) { r.SubResource = "ephemeralcontainers" }, true, http.StatusOK},
		{"no object", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = nil }, false, http.StatusBadRequest},
		{"garbage object", func(r *admissionv1.AdmissionRequest) { r.Object.Raw = []byte(`{"spec":[]}`) }, false, http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := podRequest("partner-acme", raw)
			tt.edit(req)
			resp := h.Admit(context.Background(), req)
			if resp.Allowed != tt.allowed || len(resp.Patch) != 0 {
				t.Fatalf("allowed=%v patch=%s, want allowed=%v and no patch", resp.Allowed, resp.Patch, tt.allowed)
			}
			code := int32(http.StatusOK)
			if resp.Result != nil && resp.Result.Code != 0 {
				code = resp.Result.Code
			}
			if code != tt.wantCode {
				t.Errorf("code %d, want %d", code, tt.wantCode)
			}
		})
	}
}

// TestPatchKeepsUnknownFields: a pod from a newer apiserver keeps the
// fields these types don't know.
func TestPatchKeepsUnknownFields(t *testing.T) {
	h := testHandler(t)
	raw := []byte(`{"apiVersion":"v1","kind":"Pod","metadata":{"name":"bot","labels":{"credlet.io/inject":"true"},
	"annotations":{"credlet.io/role":"acme-bot","credlet.io/credential.exa":"secret/partners/acme/exa"}},
	"spec":{"futureField":{"x":1},"securityContext":{"runAsUser":1000},"containers":[{"name":"bot","image":"b","resources":{}}]}}`)
	resp := h.Admit(context.Background(), podRequest("partner-acme", raw))
	out := applyResponse(t, raw, resp)
	if !strings.Contains(string(out), `"futureField":{"x":1}`) {
		t.Errorf("unknown field dropped: %s", out)
	}
	if !strings.Contains(string(out), `"name":"credlet-agent"`) {
		t.Errorf("agent missing: %s", out)
	}
}
