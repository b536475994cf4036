package testenv

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// Kube is an etcd + kube-apiserver pair on 127.0.0.1 started by StartKube
// through envtest. There is no kubelet and no controller manager: objects are
// stored after admission, pods never run, and no namespace gets a default
// ServiceAccount (envtest disables that admission plugin).
type Kube struct {
	Config    *rest.Config // admin (system:masters) over TLS
	Clientset kubernetes.Interface
	Env       *envtest.Environment

	dir      string
	logs     map[string]*os.File
	stopOnce sync.Once
	stopErr  error
}

// KubeOption changes how StartKube configures envtest.
type KubeOption func(*kubeOptions)

type kubeOptions struct {
	webhooks      *envtest.WebhookInstallOptions
	apiServerArgs [][]string // name, values...
}

// WithAPIServerArg sets a kube-apiserver flag (without the leading --),
// replacing envtest's default for it. internal/cluster uses it for what a
// cluster with a kubelet needs (ServiceAccount admission, the kubelet's
// address type, aggregator routing).
func WithAPIServerArg(name string, values ...string) KubeOption {
	return func(o *kubeOptions) { o.apiServerArgs = append(o.apiServerArgs, append([]string{name}, values...)) }
}

// WithWebhooks has envtest install these admission webhook configurations
// and generate a serving certificate for them. A webhook's
// ClientConfig.Service.Path (no leading slash: envtest builds
// "https://host:port/"+path) is rewritten into a URL on LocalServingHost
// (127.0.0.1 unless set) and LocalServingPort (a free port unless set).
// After StartKube, Env.WebhookInstallOptions says where the test's webhook
// server must listen and holds tls.crt and tls.key in LocalServingCertDir.
func WithWebhooks(w envtest.WebhookInstallOptions) KubeOption {
	if w.LocalServingHost == "" {
		w.LocalServingHost = "127.0.0.1"
	}
	return func(o *kubeOptions) { o.webhooks = &w }
}

// StartKube starts etcd and kube-apiserver on free 127.0.0.1 ports through
// envtest, with binaries from the tools dir (see Binary). envtest's defaults
// already make the apiserver a ServiceAccount token issuer (generated signing
// key, --service-account-issuer at its own URL) with RBAC authorization, so
// TokenRequest works; the issuer's discovery document names its JWKS at
// the same address. ctx bounds the start only (90 s when it has no
// deadline). Like Vault, both servers die with the test binary on Linux
// (envtest is given wrappers that arm the parent-death signal, see
// proc_linux.go). The error wraps ErrBinaryMissing when a binary is missing.
func StartKube(ctx context.Context, opts ...KubeOption) (*Kube, error) {
	var o kubeOptions
	for _, opt := range opts {
		opt(&o)
	}
	apiserverBin, err := Binary(BinKubeAPIServer)
	if err != nil {
		return nil, err
	}
	etcdBin, err := Binary(BinEtcd)
	if err != nil {
		return nil, err
	}
	ctx, cancel := startContext(ctx)
	defer cancel()
	dir, err := newDataDir("kube")
	if err != nil {
		return nil, err
	}
	k := &Kube{dir: dir}
	env, err := k.newEnvironment(apiserverBin, etcdBin, &o)
	if err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("start kube: %w", err)
	}
	k.Env = env

	// envtest.Start takes no context; it retries a failed start 5 times,
	// each bounded by ControlPlaneStartTimeout.
	started := make(chan error, 1)
	go func() {
		_, err := env.Start()
		started <- err
	}()
	select {
	case err = <-started:
	case <-ctx.Done():
		err = ctx.Err()
		go func() { <-started; _ = k.Stop() }()
		return nil, fmt.Errorf("start kube: %w", err)
	}
	if err != nil {
		err = fmt.Errorf("start kube: %w\napiserver log:\n%s\netcd log:\n%s", err,
			logTail(filepath.Join(dir, "kube-apiserver.log")), logTail(filepath.Join(dir, "etcd.log")))
		_ = k.Stop()
		return nil, err
	}
	// envtest always makes a webhook serving-cert dir directly in $TMPDIR
	// (even with no webhooks). Move it into the data dir, which Stop removes
	// and the stale sweep covers should this process be killed.
	if w := &env.WebhookInstallOptions; w.LocalServingCertDir != "" && !within(dir, w.LocalServingCertDir) {
		moved := filepath.Join(dir, "webhook-certs")
		if err := os.Rename(w.LocalServingCertDir, moved); err == nil {
			w.LocalServingCertDir = moved
		}
	}
	k.Config = env.Config
	cs, err := kubernetes.NewForConfig(env.Config)
	if err != nil {
		_ = k.Stop()
		return nil, fmt.Errorf("start kube: clientset: %w", err)
	}
	k.Clientset = cs
	return k, nil
}

func (k *Kube) newEnvironment(apiserverBin, etcdBin string, o *kubeOptions) (*envtest.Environment, error) {
	wrapDir := filepath.Join(k.dir, "bin")
	if err := os.Mkdir(wrapDir, 0o700); err != nil {
		return nil, err
	}
	paths, err := wrapBinaries(wrapDir, map[string]string{BinKubeAPIServer: apiserverBin, BinEtcd: etcdBin})
	if err != nil {
		return nil, err
	}
	logs := map[string]*os.File{}
	k.logs = logs
	for _, name := range []string{BinKubeAPIServer, BinEtcd} {
		f, err := os.Create(filepath.Join(k.dir, name+".log"))
		if err != nil {
			return nil, err
		}
		// The servers hold their own descriptors once started; closing
		// ours after Start would race envtest's retries, so Stop closes it.
		logs[name] = f
	}
	ports := make([]string, 3)
	for i := range ports {
		p, err := FreePort()
		if err != nil {
			return nil, err
		}
		ports[i] = strconv.Itoa(p)
	}
	for _, sub := range []string{"etcd", "apiserver"} {
		if err := os.Mkdir(filepath.Join(k.dir, sub), 0o700); err != nil {
			return nil, err
		}
	}

	no := false
	env := &envtest.Environment{
		BinaryAssetsDirectory:    filepath.Dir(apiserverBin),
		UseExistingCluster:       &no,
		ControlPlaneStartTimeout: 45 * time.Second,
		ControlPlaneStopTimeout:  15 * time.Second,
	}
	etcd := &envtest.Etcd{
		Path:    paths[BinEtcd],
		DataDir: filepath.Join(k.dir, "etcd"),
		URL:     mustURL("http://" + net.JoinHostPort("127.0.0.1", ports[0])),
		Out:     logs[BinEtcd],
		Err:     logs[BinEtcd],
	}
	etcd.Configure().Set("listen-peer-urls", "http://"+net.JoinHostPort("127.0.0.1", ports[1]))
	env.ControlPlane.Etcd = etcd

	api := env.ControlPlane.GetAPIServer()
	api.Path = paths[BinKubeAPIServer]
	api.CertDir = filepath.Join(k.dir, "apiserver")
	api.SecureServing.ListenAddr = envtest.ListenAddr{Address: "127.0.0.1", Port: ports[2]}
	api.Out = logs[BinKubeAPIServer]
	api.Err = logs[BinKubeAPIServer]
	// The discovery document's jwks_uri, on the address the apiserver
	// listens on (by default it names the host's external address, which
	// nothing listens on here), so OIDC discovery (Vault's jwt auth) works.
	api.Configure().Set("service-account-jwks-uri", "https://"+net.JoinHostPort("127.0.0.1", ports[2])+"/openid/v1/jwks")
	for _, a := range o.apiServerArgs {
		api.Configure().Set(a[0], a[1:]...)
	}
	if o.webhooks != nil {
		env.WebhookInstallOptions = *o.webhooks
	}
	return env, nil
}

// Stop stops kube-apiserver and etcd and removes their data. It is safe to
// call more than once.
func (k *Kube) Stop() error {
	k.stopOnce.Do(func() {
		var errs []error
		if k.Env != nil {
			if err := k.Env.Stop(); err != nil {
				errs = append(errs, fmt.Errorf("stop kube: %w", err))
			}
		}
		for _, f := range k.logs {
			_ = f.Close()
		}
		if err := removeDataDir(k.dir); err != nil {
			errs = append(errs, fmt.Errorf("stop kube: %w", err))
		}
		k.stopErr = errors.Join(errs...)
	})
	return k.stopErr
}

// EnsureNamespace creates namespace name unless it exists.
func (k *Kube) EnsureNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := k.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create namespace %s: %w", name, err)
	}
	return nil
}

// CreateServiceAccount creates ServiceAccount ns/name unless it exists.
func (k *Kube) CreateServiceAccount(ctx context.Context, ns, name string) error {
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}}
	_, err := k.Clientset.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("create serviceaccount %s/%s: %w", ns, name, err)
	}
	return nil
}

// TokenRequest returns a token for ServiceAccount ns/sa, like a projected
// token: for audience (the apiserver's own when empty), valid for ttl (the
// apiserver's default of 1 h when zero; the apiserver refuses less than
// 10 min).
func (k *Kube) TokenRequest(ctx context.Context, ns, sa, audience string, ttl time.Duration) (string, error) {
	tr := &authenticationv1.TokenRequest{}
	if audience != "" {
		tr.Spec.Audiences = []string{audience}
	}
	if ttl > 0 {
		secs := int64(ttl.Seconds())
		tr.Spec.ExpirationSeconds = &secs
	}
	out, err := k.Clientset.CoreV1().ServiceAccounts(ns).CreateToken(ctx, sa, tr, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("token request %s/%s: %w", ns, sa, err)
	}
	return out.Status.Token, nil
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// within reports whether path is inside dir.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}
