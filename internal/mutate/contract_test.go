package mutate_test

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credlet/credlet/internal/agentcmd"
	"github.com/credlet/credlet/internal/annotation"
	"github.com/credlet/credlet/internal/injectorconfig"
	"github.com/credlet/credlet/internal/mutate"
)

// shape is one way a pod may ask for the agent.
type shape struct {
	namespace string // partner-*: sidecar classic by the namespace default
	sidecar   annotation.Sidecar
	delivery  annotation.Delivery
	auth      annotation.Auth
	extras    bool // verify-url, notify, refresh, log-level, uid/gid
}

func (s shape) String() string {
	sc := string(s.sidecar)
	if sc == "" {
		sc = "default"
	}
	return fmt.Sprintf("%s/%s/%s/%s/extras=%t", s.namespace, sc, s.delivery, s.auth, s.extras)
}

// pod builds a pod with the annotations the shape names.
func (s shape) pod() *corev1.Pod {
	path := "secret/partners/acme/zerodha"
	switch s.namespace {
	case "partner-shared":
		path = "secret/partners/shared/feed"
	case "dev":
		path = "kv/dev/feed"
	}
	ann := map[string]string{
		annotation.CredentialPrefix + "feed":               path,
		annotation.CredentialPrefix + "feed.transit-key":   "credlet-partners",
		annotation.CredentialPrefix + "feed.context":       "acme",
		annotation.CredentialPrefix + "feed.format":        "json",
		annotation.CredentialPrefix + "backup":             path + "-backup",
		annotation.CredentialPrefix + "backup.optional":    "true",
		annotation.Prefix + "delivery":                     s.delivery.String(),
		annotation.Prefix + "auth":                         string(s.auth),
		annotation.CredentialPrefix + "backup.fields":      "api_key,api_secret",
		annotation.CredentialPrefix + "feed.fields":        "api_key",
		annotation.CredentialPrefix + "backup.transit-key": "credlet-partners",
		annotation.CredentialPrefix + "backup.format":      "env",
		annotation.CredentialPrefix + "feed.optional":      "false",
		annotation.CredentialPrefix + "backup.context":     "acme-backup",
		annotation.Prefix + "agent-memory":                 "48Mi",
		annotation.Prefix + "agent-cpu":                    "20m",
	}
	if s.sidecar != "" {
		ann[annotation.Prefix+"sidecar"] = string(s.sidecar)
	}
	switch s.auth {
	case annotation.AuthKubernetes, annotation.AuthJWT:
		ann[annotation.Prefix+"role"] = "acme-bot"
	case annotation.AuthAppRole:
		ann[annotation.Prefix+"approle-secret"] = "acme-approle"
	}
	if s.extras {
		ann[annotation.Prefix+"verify-url"] = "http://127.0.0.1:8080/verify"
		ann[annotation.Prefix+"notify"] = "http:http://127.0.0.1:8080/reload"
		ann[annotation.Prefix+"refresh"] = "30s"
		ann[annotation.Prefix+"log-level"] = "debug"
		ann[annotation.Prefix+"uid"] = "1001"
		ann[annotation.Prefix+"gid"] = "2002"
	}
	sc := &corev1.PodSecurityContext{RunAsUser: new(int64(1000))}
	if s.extras {
		sc = nil // the app's user comes from credlet.io/uid
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			GenerateName: "bot-",
			Labels:       map[string]string{annotation.InjectLabel: "true"},
			Annotations:  ann,
		},
		Spec: corev1.PodSpec{
			SecurityContext: sc,
			Containers:      []corev1.Container{{Name: "bot", Image: "registry.example.test/bot:1"}},
		},
	}
}

// shapes is every sidecar × delivery × auth the injector admits, in each
// namespace kind of the test config, with and without the optional
// annotations that add agent flags.
func shapes() []shape {
	var out []shape
	for _, ns := range []string{"partner-acme", "partner-shared", "dev"} {
		for _, sc := range append([]annotation.Sidecar{""}, annotation.Sidecars...) {
			for _, d := range annotation.Deliveries {
				for _, a := range annotation.Auths {
					for _, extras := range []bool{false, true} {
						out = append(out, shape{namespace: ns, sidecar: sc, delivery: d, auth: a, extras: extras})
					}
				}
			}
		}
	}
	return out
}

// TestAgentArgsContract checks the contract between the two programs: every
// agent container the injector writes, for every shape it admits, parses in
// credlet-agent's own flag parser with the container's env, and the parsed
// configuration matches what the pod asked for.
func TestAgentArgsContract(t *testing.T) {
	cfg, err := injectorconfig.Load(filepath.Join("testdata", "config.yaml"), injectorconfig.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range shapes() {
		t.Run(s.String(), func(t *testing.T) {
			out, err := mutate.Mutate(s.pod(), s.namespace, cfg)
			if err != nil {
				t.Fatalf("the injector refused a shape it documents: %v", err)
			}
			if out == nil {
				t.Fatal("the injector left the pod alone")
			}
			agents := agentContainers(out)
			if len(agents) == 0 {
				t.Fatal("no agent container")
			}
			for _, c := range agents {
				checkAgentContainer(t, s, c)
			}
		})
	}
}

func agentContainers(pod *corev1.Pod) []corev1.Container {
	var out []corev1.Container
	for _, c := range slices.Concat(pod.Spec.InitContainers, pod.Spec.Containers) {
		if c.Name == mutate.AgentName || c.Name == mutate.AgentInitName {
			out = append(out, c)
		}
	}
	return out
}

func checkAgentContainer(t *testing.T, s shape, c corev1.Container) {
	t.Helper()
	if len(c.Command) != 0 {
		t.Errorf("%s: command %q overrides the image's entrypoint", c.Name, c.Command)
	}
	if len(c.Args) == 0 || c.Args[0] != "run" {
		t.Fatalf("%s: args %q do not start with the run subcommand", c.Name, c.Args)
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Errorf("%s: env %s comes from a reference the test cannot resolve", c.Name, e.Name)
		}
		env[e.Name] = e.Value
	}
	got, err := agentcmd.ParseRun(c.Args[1:], func(k string) string { return env[k] })
	if err != nil {
		t.Fatalf("%s: credlet-agent refuses the args the injector wrote: %v\nargs: %q", c.Name, err, c.Args)
	}
	if len(got.Credentials) != 2 || got.Credentials[0].Name != "backup" || got.Credentials[1].Name != "feed" {
		t.Errorf("%s: credentials %v, want backup and feed", c.Name, got.Credentials)
	}
	if got.Auth != string(s.auth) {
		t.Errorf("%s: --auth %q, want %q", c.Name, got.Auth, s.auth)
	}
	if got.Once != (c.Name == mutate.AgentInitName) {
		t.Errorf("%s: --once is %t", c.Name, got.Once)
	}
	if got.Once {
		// the init container's whole job is to fill the files
		if got.SecretsDir != mutate.SecretsDir {
			t.Errorf("%s: --once with --secrets-dir %q, want %q", c.Name, got.SecretsDir, mutate.SecretsDir)
		}
		return
	}
	if want := s.delivery.Files; (got.SecretsDir != "") != want {
		t.Errorf("%s: --secrets-dir %q with delivery %s", c.Name, got.SecretsDir, s.delivery)
	}
	if want := s.delivery.Socket; (got.Socket != "") != want {
		t.Errorf("%s: --socket %q with delivery %s", c.Name, got.Socket, s.delivery)
	}
	if s.extras && (got.VerifyURL == "" || got.Notify == "" || got.LogLevel != "debug" || got.Refresh.String() != "30s") {
		t.Errorf("%s: optional annotations lost: verify %q notify %q log-level %q refresh %s", c.Name, got.VerifyURL, got.Notify, got.LogLevel, got.Refresh)
	}
}
