package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/credlet/credlet/internal/testenv"
)

// Options configure Start.
type Options struct {
	// Archives are docker-archive tarballs (package images) imported into
	// containerd before the kubelet starts. One of them must hold
	// PauseImage.
	Archives []string
	// Log receives one line per step; nil discards them.
	Log io.Writer

	noVault bool // this package's tests of the data plane alone
}

// Cluster is a running single-node cluster. Start makes one; Stop ends it.
type Cluster struct {
	Dir              string        // the cluster's folder: configs, logs/, data
	Kube             *testenv.Kube // etcd + kube-apiserver on 127.0.0.1
	Vault            *testenv.Vault
	VaultPodAddr     string // http://NodeIP:PORT: Vault as pods reach it
	Kubeconfig       string // admin kubeconfig file
	ContainerdSocket string

	caFile     string
	cniConfDir string
	bins       *binaries
	log        io.Writer
	vaultFwd   net.Listener

	mu         sync.Mutex
	procs      []*proc
	containerd *proc
	kubelet    *proc
	stopOnce   sync.Once
}

// Start starts the whole cluster and returns once the node is Ready, the
// controllers run (namespace "default" has its ServiceAccount) and Vault
// answers on VaultPodAddr. It must run inside Isolate's namespaces. ctx
// bounds the start. The error wraps testenv.ErrBinaryMissing when a binary
// is missing.
func Start(ctx context.Context, opts Options) (c *Cluster, err error) {
	if !Isolated() {
		return nil, errors.New("cluster: Start outside the run's namespaces: call cluster.Isolate first")
	}
	bins, err := findBinaries()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "credlet-cluster-")
	if err != nil {
		return nil, err
	}
	c = &Cluster{Dir: dir, bins: bins, log: opts.Log}
	if c.log == nil {
		c.log = io.Discard
	}
	defer func() {
		if err != nil {
			_ = c.Stop()
		}
	}()
	begin := time.Now()
	step := func(format string, a ...any) {
		fmt.Fprintf(c.log, "cluster: %6.1fs %s\n", time.Since(begin).Seconds(), fmt.Sprintf(format, a...))
	}

	if err := c.setupNetwork(ctx); err != nil {
		return nil, fmt.Errorf("cluster: network: %w", err)
	}
	step("bridge %s with node address %s", bridgeName, NodeIP)

	// containerd and the images while the control plane starts.
	ctrdErr := make(chan error, 1)
	go func() {
		if err := c.startContainerd(ctx, bins); err != nil {
			ctrdErr <- fmt.Errorf("cluster: containerd: %w", err)
			return
		}
		for _, a := range opts.Archives {
			if err := c.ImportImages(ctx, a); err != nil {
				ctrdErr <- fmt.Errorf("cluster: import %s: %w", a, err)
				return
			}
		}
		step("containerd up, images imported")
		ctrdErr <- nil
	}()

	if !opts.noVault {
		c.Vault, err = testenv.StartVault(ctx)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		if err := c.forwardVault(); err != nil {
			return nil, fmt.Errorf("cluster: vault on the node address: %w", err)
		}
		step("vault at %s (pods: %s)", c.Vault.Addr, c.VaultPodAddr)
	}

	c.Kube, err = testenv.StartKube(ctx,
		// The admission chain of a real cluster: ServiceAccount admission on
		// (envtest turns it off, there is no controller manager there).
		testenv.WithAPIServerArg("disable-admission-plugins", "DefaultStorageClass"),
		// Webhooks and aggregated APIs are called at their endpoints' pod
		// addresses: there is no kube-proxy for Service addresses.
		testenv.WithAPIServerArg("enable-aggregator-routing", "true"),
		testenv.WithAPIServerArg("advertise-address", NodeIP),
		// Logs and exec reach the kubelet at the node's address (its name
		// resolves nowhere).
		testenv.WithAPIServerArg("kubelet-preferred-address-types", "InternalIP"),
	)
	if err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	step("kube-apiserver at %s", c.Kube.Config.Host)
	if err := c.writeKubeconfig(); err != nil {
		return nil, fmt.Errorf("cluster: kubeconfig: %w", err)
	}
	if err := c.startControllers(); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	select {
	case err := <-ctrdErr:
		if err != nil {
			return nil, err
		}
	case <-ctx.Done():
		return nil, fmt.Errorf("cluster: containerd: %w", ctx.Err())
	}
	if err := c.startKubelet(ctx); err != nil {
		return nil, fmt.Errorf("cluster: kubelet: %w", err)
	}
	step("node %s Ready", NodeName)
	if err := c.waitControllers(ctx); err != nil {
		return nil, fmt.Errorf("cluster: %w", err)
	}
	step("controllers running")
	return c, nil
}

// Stop stops every process (kubelet first, so it stops no pod itself),
// Vault and the apiserver, and removes the cluster's folder. Pods' processes
// end with containerd's shims when the run's namespaces end (see Isolate).
func (c *Cluster) Stop() error {
	var errs []error
	c.stopOnce.Do(func() {
		c.mu.Lock()
		procs := append([]*proc(nil), c.procs...)
		c.mu.Unlock()
		for i := len(procs) - 1; i >= 0; i-- {
			procs[i].stop(10 * time.Second)
		}
		if c.vaultFwd != nil {
			_ = c.vaultFwd.Close()
		}
		if c.Vault != nil {
			errs = append(errs, c.Vault.Stop())
		}
		if c.Kube != nil {
			errs = append(errs, c.Kube.Stop())
		}
		if os.Getenv("CREDLET_CLUSTER_KEEP") == "" {
			errs = append(errs, removeAllMounted(c.Dir))
		} else {
			fmt.Fprintf(c.log, "cluster: kept %s\n", c.Dir)
		}
	})
	return errors.Join(errs...)
}

// removeAllMounted removes dir after unmounting whatever is mounted below
// it (pod volumes, container root file systems).
func removeAllMounted(dir string) error {
	unmountBelow(dir)
	return os.RemoveAll(dir)
}

// Logs returns the path of a component's log (containerd, kubelet,
// kube-controller-manager, kube-scheduler).
func (c *Cluster) Logs(name string) string { return filepath.Join(c.Dir, "logs", name+".log") }

func (c *Cluster) writeKubeconfig() error {
	cfg := c.Kube.Config
	c.caFile = filepath.Join(c.Dir, "ca.crt")
	if err := os.WriteFile(c.caFile, cfg.CAData, 0o644); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	return WriteKubeconfig(c.Kubeconfig, cfg)
}

// WriteKubeconfig writes a kubeconfig file (0600) for cfg, which must use
// client certificates.
func WriteKubeconfig(path string, cfg *rest.Config) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["credlet"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cfg.CertData, ClientKeyData: cfg.KeyData}
	kc.Contexts["credlet"] = &clientcmdapi.Context{Cluster: "credlet", AuthInfo: "admin"}
	kc.CurrentContext = "credlet"
	return clientcmd.WriteToFile(*kc, path)
}

// startControllers starts kube-controller-manager and kube-scheduler.
func (c *Cluster) startControllers() error {
	certDir := c.Kube.Env.ControlPlane.APIServer.CertDir
	p, err := c.startProc("kube-controller-manager", c.bins.controllerManager, []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--controllers=*",
		"--root-ca-file=" + c.caFile,
		"--service-account-private-key-file=" + filepath.Join(certDir, "sa-signer.key"),
		"--use-service-account-credentials=false",
		"--cluster-name=credlet",
		"--v=1",
	}, nil)
	if err != nil {
		return err
	}
	_ = p
	if _, err := c.startProc("kube-scheduler", c.bins.scheduler, []string{
		"--kubeconfig=" + c.Kubeconfig,
		"--authentication-kubeconfig=" + c.Kubeconfig,
		"--authorization-kubeconfig=" + c.Kubeconfig,
		"--leader-elect=false",
		"--secure-port=0",
		"--v=1",
	}, nil); err != nil {
		return err
	}
	return nil
}

// waitControllers waits until the controller manager has given namespace
// default its ServiceAccount and CA config map: the sign that its
// controllers run.
func (c *Cluster) waitControllers(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	cs := c.Kube.Clientset
	c.mu.Lock()
	procs := append([]*proc(nil), c.procs...)
	c.mu.Unlock()
	return waitFor(ctx, "the controller manager (ServiceAccount default/default, ConfigMap default/kube-root-ca.crt)", 500*time.Millisecond, func(ctx context.Context) (bool, error) {
		if _, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return false, nil
			}
			return false, err
		}
		_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil, nil
	}, procs...)
}
