package mutate_test

import (
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credlet/credlet/internal/injectorconfig"
	"github.com/credlet/credlet/internal/mutate"
)

func ExampleMutate() {
	dir, _ := os.MkdirTemp("", "credlet-mutate")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "config.yaml")
	_ = os.WriteFile(path, []byte("namespaces:\n  partner-acme:\n    allowedPaths: [secret/partners/acme]\n"), 0o600)
	cfg, err := injectorconfig.Load(path, injectorconfig.Settings{
		AgentImage: "registry.example.test/credlet-agent:v1", VaultAddr: "https://vault.example.test:8200",
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	uid := int64(1000)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Labels: map[string]string{"credlet.io/inject": "true"},
			Annotations: map[string]string{
				"credlet.io/role":           "acme-bot",
				"credlet.io/credential.exa": "secret/partners/acme/exa",
				"credlet.io/delivery":       "socket",
			},
		},
		Spec: corev1.PodSpec{
			SecurityContext: &corev1.PodSecurityContext{RunAsUser: &uid},
			Containers:      []corev1.Container{{Name: "bot", Image: "registry.example.test/bot:1"}},
		},
	}
	out, err := mutate.Mutate(pod, "partner-acme", cfg)
	if err != nil {
		fmt.Println(err)
		return
	}
	agent := out.Spec.InitContainers[0]
	fmt.Println(agent.Name, *agent.RestartPolicy, agent.StartupProbe.HTTPGet.Path)
	for _, a := range agent.Args {
		fmt.Println(a)
	}
	fmt.Println(out.Spec.Containers[0].Env[0].Name, out.Spec.Containers[0].Env[0].Value)
	fmt.Println(out.Annotations["credlet.io/status"])

	_, err = mutate.Mutate(pod, "partner-zeta", cfg)
	fmt.Println(err)
	// Output:
	// credlet-agent Always /readyz
	// run
	// --vault-addr=https://vault.example.test:8200
	// --auth=kubernetes
	// --role=acme-bot
	// --token-file=/var/run/secrets/credlet/token
	// --credential=exa=secret/partners/acme/exa
	// --secrets-dir=
	// --socket=/credlet/run/agent.sock
	// --allow-uid=1000
	// --listen=:9102
	// CREDLET_SOCKET /credlet/run/agent.sock
	// injected
	// namespace "partner-zeta" may not use credlet: it is not in the injector's --config (ask the platform team to add it with its allowed KV path prefixes)
}
