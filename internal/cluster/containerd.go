package cluster

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"text/template"
	"time"
)

// PauseImage is the sandbox image containerd is configured with: the pause
// program of this repository (cmd/pause), imported like every other image.
const PauseImage = "credlet.test/pause:1"

// containerdConfig is containerd's whole configuration: its root, state,
// socket and the CRI plugin's CNI folders all inside the cluster's folder.
//
// restrict_oom_score_adj: the kubelet asks for negative oom_score_adj values
// (-998 for the sandbox), and lowering one needs CAP_SYS_RESOURCE, which a
// container host may withhold even from root; runc then fails in its init
// ("failed to update /proc/self/oom_score_adj: Permission denied", reported
// by containerd as "can't get final child's PID from pipe: EOF"). With the
// option, containerd raises such values to its own score instead.
var containerdConfig = template.Must(template.New("containerd").Parse(`version = 2
root = "{{.Dir}}/root"
state = "{{.Dir}}/state"
oom_score = 0
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{{.Socket}}"

[plugins]
  [plugins."io.containerd.internal.v1.opt"]
    path = "{{.Dir}}/opt"
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "{{.PauseImage}}"
    restrict_oom_score_adj = true
    disable_apparmor = true
    tolerate_missing_hugetlb_controller = true
    disable_hugetlb_controller = true
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      snapshotter = "overlayfs"
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
        runtime_type = "io.containerd.runc.v2"
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
          BinaryName = "{{.Runc}}"
          SystemdCgroup = false
    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "{{.CNIBin}}"
      conf_dir = "{{.CNIConf}}"
      max_conf_num = 1
`))

// startContainerd writes the configuration and starts containerd, and
// returns once it answers on its socket.
func (c *Cluster) startContainerd(ctx context.Context, bins *binaries) error {
	dir := filepath.Join(c.Dir, "containerd")
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return err
	}
	c.ContainerdSocket = filepath.Join(dir, "containerd.sock")
	var cfg bytes.Buffer
	err := containerdConfig.Execute(&cfg, map[string]string{
		"Dir":        dir,
		"Socket":     c.ContainerdSocket,
		"PauseImage": PauseImage,
		"Runc":       bins.runc,
		"CNIBin":     bins.cniDir,
		"CNIConf":    c.cniConfDir,
	})
	if err != nil {
		return err
	}
	cfgPath := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(cfgPath, cfg.Bytes(), 0o644); err != nil {
		return err
	}
	p, err := c.startProc("containerd", bins.containerd, []string{"--config", cfgPath}, nil)
	if err != nil {
		return err
	}
	c.containerd = p
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	return waitFor(ctx, "containerd to answer", 200*time.Millisecond, func(ctx context.Context) (bool, error) {
		_, err := c.ctr(ctx, "version")
		return err == nil, err
	}, p)
}

// ctr runs containerd's ctr against this cluster's containerd in the
// namespace the CRI plugin uses (k8s.io).
func (c *Cluster) ctr(ctx context.Context, args ...string) ([]byte, error) {
	all := append([]string{"--address", c.ContainerdSocket, "--namespace", "k8s.io"}, args...)
	out, err := exec.CommandContext(ctx, c.bins.ctr, all...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("ctr %v: %w: %s", args, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// ImportImages imports a docker-archive tarball (package images) into
// containerd, where pods find its images without pulling.
func (c *Cluster) ImportImages(ctx context.Context, archive string) error {
	_, err := c.ctr(ctx, "images", "import", archive)
	return err
}
