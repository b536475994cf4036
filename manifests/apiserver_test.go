package manifests

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/credlet/credlet/internal/injectorconfig"
	"github.com/credlet/credlet/internal/mutate"
	"github.com/credlet/credlet/internal/testenv"
)

func kubeClient(t *testing.T) client.Client {
	t.Helper()
	testenv.NeedServers(t)
	c, err := client.New(kube.Config, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestManifestsAcceptedByAPIServer creates every built-in object of the
// install and the examples on a real kube-apiserver (server-side dry run,
// so defaulting and validation run in full). cert-manager and Prometheus
// operator kinds have no CRDs there; their shape is checked above.
func TestManifestsAcceptedByAPIServer(t *testing.T) {
	c := kubeClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, ns := range []string{"credlet-system", "acme"} {
		if err := kube.EnsureNamespace(ctx, ns); err != nil {
			t.Fatal(err)
		}
	}
	n := 0
	for _, d := range loadDocs(t, "manifests", "examples/deployments") {
		if d.kind == "" && notAnObject(d.file) {
			continue
		}
		obj, err := decode(d)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		cobj, ok := obj.(client.Object)
		if !ok {
			continue // kustomize, cert-manager, Prometheus operator kinds
		}
		if d.kind == "Namespace" {
			continue // created above
		}
		if d.kind == "ServiceAccount" {
			// Created for real: pods are admitted only with their ServiceAccount present.
			if err := c.Create(ctx, cobj); err != nil && !apierrors.IsAlreadyExists(err) {
				t.Errorf("%s: %v", d, err)
			}
			n++
			continue
		}
		if err := c.Create(ctx, cobj, client.DryRunAll); err != nil {
			t.Errorf("%s: the apiserver refused it: %v", d, err)
		}
		n++
	}
	if n < 10 {
		t.Fatalf("only %d objects checked", n)
	}
}

// TestExamplesInjected runs every example Deployment's pod through the
// injector's mutation with manifests/default/config.yaml, and has the
// apiserver validate the result: the examples are accepted as written.
func TestExamplesInjected(t *testing.T) {
	cfg, err := injectorconfig.Load(filepath.Join(root, "manifests/default/config.yaml"), injectorconfig.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	var deploys []*appsv1.Deployment
	var sas []*corev1.ServiceAccount
	for _, d := range loadDocs(t, "examples/deployments") {
		obj, err := decode(d)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		switch o := obj.(type) {
		case *appsv1.Deployment:
			deploys = append(deploys, o)
		case *corev1.ServiceAccount:
			sas = append(sas, o)
		}
	}
	type mutated struct {
		name string
		pod  *corev1.Pod
	}
	var pods []mutated
	for _, d := range deploys {
		pod := &corev1.Pod{
			ObjectMeta: *d.Spec.Template.ObjectMeta.DeepCopy(),
			Spec:       *d.Spec.Template.Spec.DeepCopy(),
		}
		pod.Namespace = d.Namespace
		pod.GenerateName = d.Name + "-"
		out, err := mutate.Mutate(pod, d.Namespace, cfg)
		if err != nil {
			t.Errorf("%s: the injector denies it: %v", d.Name, err)
			continue
		}
		var agent *corev1.Container
		for i := range out.Spec.InitContainers {
			if out.Spec.InitContainers[i].Image == cfg.Defaults.AgentImage {
				agent = &out.Spec.InitContainers[i]
			}
		}
		if agent == nil {
			t.Errorf("%s: no agent container with image %s after injection", d.Name, cfg.Defaults.AgentImage)
			continue
		}
		if len(agent.Command) != 0 || len(agent.Args) == 0 || agent.Args[0] != "run" {
			t.Errorf("%s: agent command %q args %q: the image's entrypoint (%s) must run it", d.Name, agent.Command, agent.Args, agentBinary)
		}
		pods = append(pods, mutated{d.Name, out})
	}

	c := kubeClient(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := kube.EnsureNamespace(ctx, "acme"); err != nil {
		t.Fatal(err)
	}
	for _, sa := range sas {
		if err := c.Create(ctx, sa.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
	}
	for _, p := range pods {
		if err := c.Create(ctx, p.pod, client.DryRunAll); err != nil {
			t.Errorf("%s: the apiserver refuses the injected pod: %v", p.name, err)
		}
	}
}
