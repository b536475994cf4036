package cluster

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/credlet/credlet/internal/testcert"
	"github.com/credlet/credlet/internal/testenv"
)

// TestOverlay is the kustomization the cluster deploys credlet from,
// relative to the module root.
const TestOverlay = "manifests/overlays/test"

// Partners are the namespaces manifests/vault/setup.sh sets Vault up for in
// SetupVault (PARTNERS), and AppRolePartners those that also get an AppRole
// (APPROLE_BOTS). The test overlay's injector config lists the same.
var (
	Partners        = []string{"acme", "pods", "pods-ipc"}
	AppRolePartners = []string{"acme", "pods"}
)

// RenderCredlet renders manifests/ (TestOverlay) with kustomize's Go API in
// memory, with the injector's serving certificate (tls.crt, tls.key, for
// its Service's DNS names) from a new CA, and returns the objects with that
// CA as the webhook's caBundle.
func RenderCredlet(root string) ([]*unstructured.Unstructured, error) {
	mem := filesys.MakeFsInMemory()
	src := filepath.Join(root, "manifests")
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		return mem.WriteFile("/"+filepath.ToSlash(rel), b)
	})
	if err != nil {
		return nil, fmt.Errorf("render: copy manifests: %w", err)
	}
	ca, err := testcert.NewCA("credlet-injector-ca (test cluster)")
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	certPEM, keyPEM, err := ca.Issue("credlet-injector.credlet-system.svc",
		"credlet-injector.credlet-system.svc", "credlet-injector.credlet-system.svc.cluster.local")
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	overlay := "/" + TestOverlay
	if err := mem.WriteFile(overlay+"/tls.crt", certPEM); err != nil {
		return nil, err
	}
	if err := mem.WriteFile(overlay+"/tls.key", keyPEM); err != nil {
		return nil, err
	}
	rm, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(mem, overlay)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", TestOverlay, err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", TestOverlay, err)
	}
	objs, err := DecodeYAML(out)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", TestOverlay, err)
	}
	for _, o := range objs {
		if o.GetKind() != "MutatingWebhookConfiguration" {
			continue
		}
		hooks, _, _ := unstructured.NestedSlice(o.Object, "webhooks")
		for _, h := range hooks {
			_ = unstructured.SetNestedField(h.(map[string]any), base64.StdEncoding.EncodeToString(ca.PEM), "clientConfig", "caBundle")
		}
		_ = unstructured.SetNestedSlice(o.Object, hooks, "webhooks")
	}
	return objs, nil
}

// DecodeYAML decodes a multi-document YAML stream into objects.
func DecodeYAML(b []byte) ([]*unstructured.Unstructured, error) {
	dec := yaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs, nil
			}
			return nil, err
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// Apply server-side applies objs in order.
func (c *Cluster) Apply(ctx context.Context, objs ...*unstructured.Unstructured) error {
	dc, err := dynamic.NewForConfig(c.Kube.Config)
	if err != nil {
		return err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(c.Kube.Clientset.Discovery()))
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return fmt.Errorf("apply %s %s: %w", gvk.Kind, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dc.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ri = dc.Resource(m.Resource).Namespace(o.GetNamespace())
		}
		if _, err := ri.Apply(ctx, o.GetName(), o, metav1.ApplyOptions{FieldManager: "credlet-cluster", Force: true}); err != nil {
			return fmt.Errorf("apply %s %s/%s: %w", gvk.Kind, o.GetNamespace(), o.GetName(), err)
		}
	}
	return nil
}

// ApplyFile applies every object of a YAML file.
func (c *Cluster) ApplyFile(ctx context.Context, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	objs, err := DecodeYAML(b)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return c.Apply(ctx, objs...)
}

// DeployCredlet renders and applies the test overlay and waits until the
// injector's Deployment is available and its Service has ready endpoints,
// so the webhook answers.
func (c *Cluster) DeployCredlet(ctx context.Context, root string) error {
	objs, err := RenderCredlet(root)
	if err != nil {
		return err
	}
	if err := c.Apply(ctx, objs...); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cs := c.Kube.Clientset
	return waitFor(ctx, "the injector Deployment credlet-system/credlet-injector to be available", time.Second, func(ctx context.Context) (bool, error) {
		d, err := cs.AppsV1().Deployments("credlet-system").Get(ctx, "credlet-injector", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range d.Status.Conditions {
			if cond.Type == appsv1.DeploymentAvailable && cond.Status == corev1.ConditionTrue && d.Status.ReadyReplicas == *d.Spec.Replicas {
				return true, nil
			}
		}
		return false, fmt.Errorf("%d/%d ready; %s", d.Status.ReadyReplicas, *d.Spec.Replicas, c.PodProblems(ctx, "credlet-system"))
	}, c.kubelet)
}

// PodProblems describes the pods of ns that are not Running and Ready, for
// error messages.
func (c *Cluster) PodProblems(ctx context.Context, ns string) string {
	pods, err := c.Kube.Clientset.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s: %s", p.Name, p.Status.Phase)
		for _, cond := range p.Status.Conditions {
			if cond.Status != corev1.ConditionTrue {
				fmt.Fprintf(&b, " %s=%s(%s %s)", cond.Type, cond.Status, cond.Reason, cond.Message)
			}
		}
		for _, st := range append(append([]corev1.ContainerStatus{}, p.Status.InitContainerStatuses...), p.Status.ContainerStatuses...) {
			switch {
			case st.State.Waiting != nil:
				fmt.Fprintf(&b, " [%s waiting: %s %s]", st.Name, st.State.Waiting.Reason, st.State.Waiting.Message)
			case st.State.Terminated != nil:
				fmt.Fprintf(&b, " [%s terminated: %s exit %d %s]", st.Name, st.State.Terminated.Reason, st.State.Terminated.ExitCode, st.State.Terminated.Message)
			case !st.Ready:
				fmt.Fprintf(&b, " [%s running, not ready, restarts %d]", st.Name, st.RestartCount)
			}
		}
		b.WriteString("; ")
	}
	return b.String()
}

// SetupVault runs manifests/vault/setup.sh against the cluster's Vault the
// way its header says for a Vault outside the cluster: the token reviewer
// from manifests/vault/token-reviewer.yaml (its long-lived token filled in
// by the controller manager), the apiserver's address and CA, PARTNERS and
// APPROLE_BOTS.
func (c *Cluster) SetupVault(ctx context.Context, root string) error {
	cs := c.Kube.Clientset
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "credlet-system"}}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	if err := c.ApplyFile(ctx, filepath.Join(root, "manifests/vault/token-reviewer.yaml")); err != nil {
		return err
	}
	var jwt []byte
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err := waitFor(wctx, "the token of Secret credlet-system/vault-token-reviewer", 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		s, err := cs.CoreV1().Secrets("credlet-system").Get(ctx, "vault-token-reviewer", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		jwt = s.Data["token"]
		return len(jwt) > 0, nil
	})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(c.Dir, "vault-setup-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	jwtFile := filepath.Join(dir, "reviewer.jwt")
	if err := os.WriteFile(jwtFile, jwt, 0o600); err != nil {
		return err
	}
	vaultBin, err := testenv.Binary(testenv.BinVault)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "manifests/vault/setup.sh"))
	cmd.Env = append(os.Environ(),
		"VAULT="+vaultBin, "VAULT_ADDR="+c.Vault.Addr, "VAULT_TOKEN="+c.Vault.RootToken, "HOME="+dir,
		"PARTNERS="+strings.Join(Partners, " "), "APPROLE_BOTS="+strings.Join(AppRolePartners, " "),
		"K8S_HOST="+c.Kube.Config.Host, "K8S_CA_CERT="+c.caFile, "TOKEN_REVIEWER_JWT="+jwtFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("manifests/vault/setup.sh: %w\n%s", err, out)
	}
	return nil
}
