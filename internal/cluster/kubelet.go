package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// The pod network: one bridge in the run's network namespace, its gateway
// the node's address (where pods reach Vault and the kubelet), and the pods'
// addresses from host-local.
const (
	bridgeName = "credlet0"
	podSubnet  = "10.244.0.0/24"
	NodeIP     = "10.244.0.1"
	NodeName   = "credlet-node"
)

// setupNetwork creates the bridge with the gateway address before the CNI
// plugin does, so that the node address exists before the first pod (the
// bridge plugin adopts an existing bridge and its address).
func (c *Cluster) setupNetwork(ctx context.Context) error {
	for _, args := range [][]string{
		{"link", "add", bridgeName, "type", "bridge"},
		{"addr", "add", NodeIP + "/24", "dev", bridgeName},
		{"link", "set", bridgeName, "up"},
	} {
		if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
		}
	}
	c.cniConfDir = filepath.Join(c.Dir, "cni", "net.d")
	if err := os.MkdirAll(c.cniConfDir, 0o755); err != nil {
		return err
	}
	conf := map[string]any{
		"cniVersion": "1.0.0",
		"name":       "credlet",
		"plugins": []any{map[string]any{
			"type":        "bridge",
			"bridge":      bridgeName,
			"isGateway":   true,
			"ipMasq":      false,
			"hairpinMode": true,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": podSubnet, "gateway": NodeIP}}},
				"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
				"dataDir": filepath.Join(c.Dir, "cni", "ipam"),
			},
		}},
	}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(c.cniConfDir, "10-credlet.conflist"), b, 0o644)
}

// kubeletConfig is the KubeletConfiguration. Its API (logs, exec) answers
// anyone: it listens only on the node address inside the run's network
// namespace, where only the apiserver and the pods are. cgroupfs with the v1
// hierarchies this machine kind has (failCgroupV1: false), the run's own
// cgroup root, no swap check, eviction only when the machine is nearly out
// of memory or disk, and every folder inside the cluster's.
var kubeletConfig = template.Must(template.New("kubelet").Parse(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
cgroupRoot: {{.CgroupRoot}}
cgroupsPerQOS: true
enforceNodeAllocatable: ["pods"]
failCgroupV1: false
failSwapOn: false
address: {{.NodeIP}}
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
containerRuntimeEndpoint: unix://{{.Socket}}
imageServiceEndpoint: unix://{{.Socket}}
podLogsDir: {{.Dir}}/pod-logs
resolvConf: {{.Dir}}/resolv.conf
serializeImagePulls: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard:
  memory.available: 100Mi
  nodefs.available: 1%
  nodefs.inodesFree: 1%
  imagefs.available: 1%
oomScoreAdj: 0
hairpinMode: hairpin-veth
syncFrequency: 10s
nodeStatusUpdateFrequency: 5s
shutdownGracePeriod: 0s
registerNode: true
maxPods: 110
`))

// startKubelet starts the kubelet and returns once its node is Ready.
func (c *Cluster) startKubelet(ctx context.Context) error {
	dir := filepath.Join(c.Dir, "kubelet")
	if err := os.MkdirAll(filepath.Join(dir, "pod-logs"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), nil, 0o644); err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.yaml")
	f, err := os.Create(cfgPath)
	if err != nil {
		return err
	}
	err = kubeletConfig.Execute(f, map[string]string{
		"CgroupRoot": CgroupRoot(),
		"NodeIP":     NodeIP,
		"Socket":     c.ContainerdSocket,
		"Dir":        dir,
	})
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := makeCgroupRoot(CgroupRoot()); err != nil {
		return err
	}
	p, err := c.startProc("kubelet", c.bins.kubelet, []string{
		"--config=" + cfgPath,
		"--kubeconfig=" + c.Kubeconfig,
		"--root-dir=" + filepath.Join(dir, "root"),
		"--cert-dir=" + filepath.Join(dir, "pki"),
		"--hostname-override=" + NodeName,
		"--node-ip=" + NodeIP,
		"--v=2",
	}, nil)
	if err != nil {
		return err
	}
	c.kubelet = p
	ctx, cancel := context.WithTimeout(ctx, 120*time.Second)
	defer cancel()
	return waitFor(ctx, "node "+NodeName+" Ready", time.Second, func(ctx context.Context) (bool, error) {
		n, err := c.Kube.Clientset.CoreV1().Nodes().Get(ctx, NodeName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				if cond.Status == corev1.ConditionTrue {
					return true, nil
				}
				return false, fmt.Errorf("node not ready: %s: %s", cond.Reason, cond.Message)
			}
		}
		return false, nil
	}, p, c.containerd)
}

// makeCgroupRoot creates the run's cgroup in every v1 hierarchy (the
// kubelet requires its cgroup root to exist), with cpuset's cpus and mems
// copied from the parent, which a new cpuset cgroup needs before a process
// may join it.
func makeCgroupRoot(root string) error {
	hier, err := filepath.Glob(filepath.Join(cgroupBase, "*"))
	if err != nil {
		return err
	}
	for _, h := range hier {
		if _, err := os.Stat(filepath.Join(h, "cgroup.procs")); err != nil {
			continue // not a hierarchy
		}
		d := filepath.Join(h, root)
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("cgroup root: %w", err)
		}
		if filepath.Base(h) == "cpuset" {
			for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
				b, err := os.ReadFile(filepath.Join(h, f))
				if err != nil {
					return fmt.Errorf("cgroup root: %w", err)
				}
				if err := os.WriteFile(filepath.Join(d, f), b, 0o644); err != nil {
					return fmt.Errorf("cgroup root: %w", err)
				}
			}
		}
	}
	return nil
}
