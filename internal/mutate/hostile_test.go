package mutate

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/credlet/credlet/internal/annotation"
)

// TestMutateHostileAnnotations: pods built to hurt the injector are denied
// quickly with one bounded message naming the problem; pods that merely
// carry many foreign annotations are injected.
func TestMutateHostileAnnotations(t *testing.T) {
	cfg := testConfig(t)
	many := func(n int, key func(int) string, val string) func(p *corev1.Pod) {
		return func(p *corev1.Pod) {
			for i := range n {
				p.Annotations[key(i)] = val
			}
		}
	}
	tests := []struct {
		name    string
		edit    func(p *corev1.Pod)
		allowed bool
		want    []string
	}{
		{"10,000 unknown credlet keys", many(10_000, func(i int) string { return fmt.Sprintf("credlet.io/x%d", i) }, "v"), false, []string{"credlet.io/x"}},
		{"10,000 credential sets", many(10_000, func(i int) string { return fmt.Sprintf("credlet.io/credential.c%d", i) }, "secret/partners/acme/k"), false, []string{"credential"}},
		{"10,000 foreign annotations", many(10_000, func(i int) string { return fmt.Sprintf("example.com/k%d", i) }, "v"), true, nil},
		{"escape in a credential name", func(p *corev1.Pod) { p.Annotations["credlet.io/credential.a\x1b[2J"] = "secret/partners/acme/k" }, false, []string{"credlet.io/credential."}},
		{"newline in a KV path", func(p *corev1.Pod) {
			p.Annotations["credlet.io/credential.exa"] = "secret/partners/acme/exa\n--vault-addr=http://evil"
		}, false, []string{"credlet.io/credential.exa"}},
		{"newline in the role", func(p *corev1.Pod) { p.Annotations["credlet.io/role"] = "acme-bot\n--allow-uid=0" }, false, []string{"credlet.io/role"}},
		{"flag in the role", func(p *corev1.Pod) { p.Annotations["credlet.io/role"] = "--allow-uid=0" }, false, []string{"credlet.io/role"}},
		{"semicolon options smuggled in a path", func(p *corev1.Pod) {
			p.Annotations["credlet.io/credential.exa"] = "secret/partners/acme/exa;format=env"
		}, false, []string{"credlet.io/credential.exa"}},
		{"DEL in notify", func(p *corev1.Pod) { p.Annotations["credlet.io/notify"] = "http://127.0.0.1:8080/\x7f" }, false, []string{"credlet.io/notify"}},
		{"init container named like the agent", func(p *corev1.Pod) {
			p.Spec.InitContainers = []corev1.Container{{Name: AgentName, Image: "x"}}
		}, false, []string{`"credlet-agent"`}},
		{"volume named like the socket volume", func(p *corev1.Pod) { p.Spec.Volumes = []corev1.Volume{{Name: VolumeRun}} }, false, []string{VolumeRun}},
		{"env CREDLET_SECRETS_DIR already set", func(p *corev1.Pod) {
			p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: EnvSecretsDir, Value: "/tmp"}}
		}, false, []string{EnvSecretsDir}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pod := podWith(tt.edit)
			start := time.Now()
			got, err := Mutate(pod, "partner-acme", cfg)
			limit := time.Second
			if raceEnabled {
				limit = 10 * time.Second
			}
			if d := time.Since(start); d > limit {
				t.Errorf("took %v, want under %v", d, limit)
			}
			if tt.allowed {
				if err != nil || got == nil {
					t.Fatalf("Mutate = %v, %v; want the pod injected", got != nil, err)
				}
				return
			}
			if err == nil {
				t.Fatal("Mutate allowed the pod")
			}
			if !errors.Is(err, ErrDenied) && !errors.Is(err, annotation.ErrInvalid) {
				t.Errorf("error %v is neither ErrDenied nor annotation.ErrInvalid", err)
			}
			msg := err.Error()
			if len(msg) > 4096 {
				t.Errorf("message is %d bytes: want it bounded", len(msg))
			}
			if strings.ContainsAny(msg, "\x1b\x7f\n") {
				t.Errorf("message carries raw control characters: %q", msg)
			}
			for _, w := range tt.want {
				if !strings.Contains(msg, w) {
					t.Errorf("message %.300q lacks %q", msg, w)
				}
			}
		})
	}
}
