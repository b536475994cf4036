package manifests

import (
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/credlet/credlet/internal/injectorcmd"
	"github.com/credlet/credlet/internal/injectorconfig"
)

// Files that are YAML but not Kubernetes objects, and who checks them.
func notAnObject(file string) bool {
	f := filepath.ToSlash(file)
	return f == "manifests/default/config.yaml" || // injectorconfig.Load, below
		f == "manifests/overlays/test/config.yaml" || // injectorconfig.Load, TestOverlayConfigLoads
		strings.HasPrefix(f, "manifests/monitoring/") // promtool test files: manifests/monitoring's tests
}

func TestEveryYAMLDecodesStrictly(t *testing.T) {
	docs := loadDocs(t, "manifests", "examples/deployments")
	kinds := map[string]int{}
	for _, d := range docs {
		if d.kind == "" && notAnObject(d.file) {
			continue
		}
		if _, err := decode(d); err != nil {
			t.Errorf("%s: %v", d, err)
			continue
		}
		kinds[d.kind]++
	}
	for _, k := range []string{"Namespace", "ServiceAccount", "Deployment", "Service", "PodDisruptionBudget",
		"MutatingWebhookConfiguration", "Issuer", "Certificate", "ClusterRoleBinding", "Kustomization"} {
		if kinds[k] == 0 {
			t.Errorf("no %s among the manifests", k)
		}
	}
	// A typo must fail: the decoder is strict.
	bad := doc{file: "typo", apiVersion: "apps/v1", kind: "Deployment", name: "x",
		raw: []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec: {replica: 2}\n")}
	if _, err := decode(bad); err == nil || !strings.Contains(err.Error(), "replica") {
		t.Fatalf("an unknown field passed: %v", err)
	}
}

func TestKustomizationsResolve(t *testing.T) {
	for _, d := range loadDocs(t, "manifests") {
		if d.kind != "Kustomization" {
			continue
		}
		obj, err := decode(d)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		k := obj.(*kustomization)
		dir := filepath.Join(root, filepath.Dir(d.file))
		listed := map[string]bool{}
		for _, r := range k.Resources {
			p := filepath.Join(dir, r)
			fi, err := os.Stat(p)
			switch {
			case err != nil:
				t.Errorf("%s: resource %s: %v", d.file, r, err)
			case fi.IsDir():
				if _, err := os.Stat(filepath.Join(p, "kustomization.yaml")); err != nil {
					t.Errorf("%s: resource %s is a directory without kustomization.yaml", d.file, r)
				}
			default:
				listed[filepath.Clean(p)] = true
			}
		}
		for _, g := range k.ConfigMapGenerator {
			for _, f := range g.FileSources {
				if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
					t.Errorf("%s: configMapGenerator %s: %v", d.file, g.Name, err)
				}
				listed[filepath.Clean(filepath.Join(dir, f))] = true
			}
		}
		// Every object file next to the kustomization is part of it
		// (monitoring's bare rule groups and promtool tests are not objects).
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			p := filepath.Clean(filepath.Join(dir, e.Name()))
			promtoolInput := e.Name() == "rules.yaml" || strings.HasSuffix(e.Name(), "_test.yaml")
			if strings.HasSuffix(e.Name(), ".yaml") && e.Name() != "kustomization.yaml" && !listed[p] && !promtoolInput {
				t.Errorf("%s: %s is not listed in resources", d.file, e.Name())
			}
		}
	}
}

// injector gathers the default install's pieces.
type injector struct {
	kust    *kustomization
	deploy  *appsv1.Deployment
	svc     *corev1.Service
	pdb     *policyv1.PodDisruptionBudget
	webhook *admissionregistrationv1.MutatingWebhookConfiguration
	sa      *corev1.ServiceAccount
	certs   map[string]*certificate
	issuers map[string]*issuer
}

func loadInjector(t *testing.T) injector {
	t.Helper()
	docs := loadDocs(t, "manifests/default")
	in := injector{
		kust:    typed[*kustomization](t, docs, "manifests/default/kustomization.yaml", "Kustomization"),
		deploy:  typed[*appsv1.Deployment](t, docs, "manifests/default/deployment.yaml", "Deployment"),
		svc:     typed[*corev1.Service](t, docs, "manifests/default/service.yaml", "Service"),
		pdb:     typed[*policyv1.PodDisruptionBudget](t, docs, "manifests/default/pdb.yaml", "PodDisruptionBudget"),
		webhook: typed[*admissionregistrationv1.MutatingWebhookConfiguration](t, docs, "manifests/default/webhook.yaml", "MutatingWebhookConfiguration"),
		sa:      typed[*corev1.ServiceAccount](t, docs, "manifests/default/serviceaccount.yaml", "ServiceAccount"),
		certs:   map[string]*certificate{},
		issuers: map[string]*issuer{},
	}
	for _, d := range docs {
		switch d.kind {
		case "Certificate", "Issuer":
			obj, err := decode(d)
			if err != nil {
				t.Fatalf("%s: %v", d, err)
			}
			if c, ok := obj.(*certificate); ok {
				in.certs[c.Name] = c
			} else {
				in.issuers[d.name] = obj.(*issuer)
			}
		}
	}
	return in
}

func TestInjectorDeployment(t *testing.T) {
	in := loadInjector(t)
	d := in.deploy
	pod := d.Spec.Template.Spec
	if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
		t.Error("the injector needs at least 2 replicas (failurePolicy Fail)")
	}
	sel, err := labelsSelector(d.Spec.Selector.MatchLabels)
	if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Fatalf("deployment selector does not match its pods: %v", err)
	}
	if pdbSel, _ := labelsSelector(in.pdb.Spec.Selector.MatchLabels); !pdbSel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Error("PodDisruptionBudget does not select the injector's pods")
	}
	if in.pdb.Spec.MinAvailable == nil || in.pdb.Spec.MinAvailable.IntValue() < 1 {
		t.Error("PodDisruptionBudget must keep one injector")
	}
	if svcSel, _ := labelsSelector(in.svc.Spec.Selector); !svcSel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Error("Service does not select the injector's pods")
	}
	if a := pod.Affinity; a == nil || a.PodAntiAffinity == nil ||
		len(a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution)+len(a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution) == 0 {
		t.Error("no pod anti-affinity")
	}
	if pod.ServiceAccountName != in.sa.Name || pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("the injector must run as its ServiceAccount without an API token")
	}
	if psc := pod.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
		psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("pod securityContext: want runAsNonRoot, a non-zero runAsUser and RuntimeDefault seccomp")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Containers))
	}
	c := pod.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
		sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		t.Error("container securityContext: want a read-only root, no privilege escalation, all capabilities dropped")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Error("container resources: want CPU and memory requests and a memory limit")
	}
	if c.ReadinessProbe == nil || c.LivenessProbe == nil {
		t.Fatal("readiness and liveness probes are required")
	}
	if !slices.Equal(c.Command, []string{injectorBinary}) {
		t.Errorf("command %q, want [%s] (the image's entrypoint is the agent)", c.Command, injectorBinary)
	}

	// The args are the injector's real flags, and agree with the ports,
	// probes and mounts.
	o, err := injectorcmd.ParseFlags(c.Args, io.Discard)
	if err != nil {
		t.Fatalf("injector args %q: %v", c.Args, err)
	}
	port := func(name string) int32 {
		for _, p := range c.Ports {
			if p.Name == name {
				return p.ContainerPort
			}
		}
		t.Fatalf("no container port %q", name)
		return 0
	}
	if listenPort(t, o.Listen) != port("webhook") || listenPort(t, o.MetricsListen) != port("metrics") {
		t.Errorf("--listen %s / --metrics-listen %s disagree with the container ports", o.Listen, o.MetricsListen)
	}
	for _, pr := range []struct {
		p      *corev1.Probe
		path   string
		port   string
		scheme corev1.URIScheme
	}{{c.ReadinessProbe, "/readyz", "webhook", corev1.URISchemeHTTPS}, {c.LivenessProbe, "/healthz", "metrics", corev1.URISchemeHTTP}} {
		g := pr.p.HTTPGet
		if g == nil || g.Path != pr.path || g.Port != intstr.FromString(pr.port) || g.Scheme != pr.scheme {
			t.Errorf("probe %+v: want %s %s on %s", g, pr.scheme, pr.path, pr.port)
		}
	}
	mounted := func(file string) string {
		for _, m := range c.VolumeMounts {
			if strings.HasPrefix(file, m.MountPath+"/") {
				return m.Name
			}
		}
		return ""
	}
	vol := func(name string) corev1.Volume {
		for _, v := range pod.Volumes {
			if v.Name == name {
				return v
			}
		}
		t.Fatalf("no volume %q", name)
		return corev1.Volume{}
	}
	tls := vol(mounted(o.TLSCertFile))
	if mounted(o.TLSKeyFile) != tls.Name || tls.Secret == nil {
		t.Fatalf("--tls-cert-file %s / --tls-key-file %s are not on one mounted Secret", o.TLSCertFile, o.TLSKeyFile)
	}
	if path.Base(o.TLSCertFile) != "tls.crt" || path.Base(o.TLSKeyFile) != "tls.key" {
		t.Error("cert-manager writes tls.crt and tls.key")
	}
	serving, ok := in.certs["credlet-injector-tls"]
	if !ok || serving.Spec.SecretName != tls.Secret.SecretName {
		t.Errorf("the TLS volume mounts Secret %q; no Certificate writes it", tls.Secret.SecretName)
	}
	cfgVol := vol(mounted(o.ConfigFile))
	if cfgVol.ConfigMap == nil || cfgVol.ConfigMap.Name != in.kust.ConfigMapGenerator[0].Name ||
		path.Base(o.ConfigFile) != path.Base(in.kust.ConfigMapGenerator[0].FileSources[0]) {
		t.Errorf("--config %s is not the generated ConfigMap's file", o.ConfigFile)
	}

	// The image: kustomize's images entry and the agents' image agree.
	image := c.Image
	for _, im := range in.kust.Images {
		if strings.HasPrefix(image, im.Name+":") || image == im.Name {
			image = im.Name + ":" + im.NewTag
		}
	}
	cfg, err := injectorconfig.Load(filepath.Join(root, "manifests/default/config.yaml"), injectorconfig.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Defaults.AgentImage != image {
		t.Errorf("agents get image %s, the injector runs %s: one image holds both, keep them equal", cfg.Defaults.AgentImage, image)
	}
}

func TestWebhookConfiguration(t *testing.T) {
	in := loadInjector(t)
	if len(in.webhook.Webhooks) != 1 {
		t.Fatalf("%d webhooks", len(in.webhook.Webhooks))
	}
	w := in.webhook.Webhooks[0]
	if w.ObjectSelector == nil || w.ObjectSelector.MatchLabels["credlet.io/inject"] != "true" {
		t.Error("objectSelector must be credlet.io/inject=true")
	}
	if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
		t.Error("failurePolicy must be Fail")
	}
	if w.SideEffects == nil || *w.SideEffects != admissionregistrationv1.SideEffectClassNone {
		t.Error("sideEffects must be None")
	}
	if w.TimeoutSeconds == nil || *w.TimeoutSeconds != 5 {
		t.Error("timeoutSeconds must be 5")
	}
	if w.ReinvocationPolicy == nil || *w.ReinvocationPolicy != admissionregistrationv1.IfNeededReinvocationPolicy {
		t.Error("reinvocationPolicy must be IfNeeded")
	}
	if len(w.Rules) != 1 || !slices.Equal(w.Rules[0].Resources, []string{"pods"}) || !slices.Equal(w.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) {
		t.Errorf("rules %+v: want CREATE pods", w.Rules)
	}
	s := w.ClientConfig.Service
	if s == nil || s.Name != in.svc.Name || s.Namespace != in.svc.Namespace || s.Path == nil || *s.Path != "/mutate" {
		t.Fatalf("clientConfig.service %+v does not point at Service %s/%s /mutate", s, in.svc.Namespace, in.svc.Name)
	}
	var target intstr.IntOrString
	for _, p := range in.svc.Spec.Ports {
		if s.Port != nil && p.Port == *s.Port {
			target = p.TargetPort
		}
	}
	if target.String() != "webhook" {
		t.Errorf("webhook port %v does not reach the container's webhook port (target %v)", s.Port, target)
	}
	// cert-manager fills caBundle from the serving Certificate, whose names
	// must cover the Service.
	ref := in.webhook.Annotations["cert-manager.io/inject-ca-from"]
	ns, name, _ := strings.Cut(ref, "/")
	cert, ok := in.certs[name]
	if !ok || ns != cert.Namespace {
		t.Fatalf("inject-ca-from %q names no Certificate", ref)
	}
	if !slices.Contains(cert.Spec.DNSNames, s.Name+"."+s.Namespace+".svc") {
		t.Errorf("serving certificate names %v lack %s.%s.svc", cert.Spec.DNSNames, s.Name, s.Namespace)
	}
	// The issuer chain resolves.
	for name := cert.Spec.IssuerRef.Name; ; {
		is, ok := in.issuers[name]
		if !ok {
			t.Fatalf("issuer %q is not defined", name)
		}
		if is.Spec.SelfSigned != nil {
			break
		}
		ca := is.Spec.CA
		var next string
		for _, c := range in.certs {
			if ca != nil && c.Spec.SecretName == ca.SecretName && c.Spec.IsCA {
				next = c.Spec.IssuerRef.Name
			}
		}
		if next == "" || next == name {
			t.Fatalf("CA issuer %q: no CA Certificate writes its Secret", name)
		}
		name = next
	}
	// The injector's own namespace never reaches its webhook.
	if w.NamespaceSelector == nil || !strings.Contains(w.NamespaceSelector.String(), in.deploy.Namespace) {
		t.Errorf("namespaceSelector should exclude %s", in.deploy.Namespace)
	}
}

func labelsSelector(m map[string]string) (labels.Selector, error) {
	return labels.ValidatedSelectorFromSet(m)
}

func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	var n int32
	for _, ch := range p {
		n = n*10 + int32(ch-'0')
	}
	return n
}

// TestExampleDeploymentsShape: every example is a Deployment in a
// namespace the default config knows, labelled for injection, with a
// ServiceAccount of its own.
func TestExampleDeploymentsShape(t *testing.T) {
	cfg, err := injectorconfig.Load(filepath.Join(root, "manifests/default/config.yaml"), injectorconfig.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	docs := loadDocs(t, "examples/deployments")
	sas := map[string]bool{}
	var deploys []*appsv1.Deployment
	for _, d := range docs {
		obj, err := decode(d)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		switch o := obj.(type) {
		case *corev1.ServiceAccount:
			sas[o.Namespace+"/"+o.Name] = true
		case *appsv1.Deployment:
			deploys = append(deploys, o)
		}
	}
	if len(deploys) < 4 {
		t.Fatalf("%d example Deployments, want socket-only, files-only, both and AppRole", len(deploys))
	}
	for _, d := range deploys {
		if _, ok := cfg.Policy(d.Namespace); !ok {
			t.Errorf("%s: namespace %q is not in manifests/default/config.yaml", d.Name, d.Namespace)
		}
		if d.Spec.Template.Labels["credlet.io/inject"] != "true" {
			t.Errorf("%s: pod template lacks the credlet.io/inject label", d.Name)
		}
		if !sas[d.Namespace+"/"+d.Spec.Template.Spec.ServiceAccountName] {
			t.Errorf("%s: ServiceAccount %q is not defined next to it", d.Name, d.Spec.Template.Spec.ServiceAccountName)
		}
	}
}

// The test overlay's injector config (make cluster, test/pods) is one the
// injector loads.
func TestOverlayConfigLoads(t *testing.T) {
	cfg, err := injectorconfig.Load(filepath.Join(root, "manifests/overlays/test/config.yaml"), injectorconfig.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	// Pods reach Vault at the node address there, and the namespaces the
	// pod tests and the examples use are configured.
	if cfg.Defaults.VaultAddr != "http://10.244.0.1:8200" {
		t.Errorf("defaults.vaultAddr = %q, want the node address http://10.244.0.1:8200", cfg.Defaults.VaultAddr)
	}
	for _, ns := range []string{"acme", "pods"} {
		if _, ok := cfg.Namespaces[ns]; !ok {
			t.Errorf("namespace %s missing from the test overlay's config", ns)
		}
	}
}
