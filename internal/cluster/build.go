package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/credlet/credlet/internal/cluster/images"
)

// Image names the cluster's images carry. The credlet image is the one
// manifests/overlays/test deploys and has the injector inject; the example
// apps carry the names examples/deployments uses, so those files apply as
// they are.
const (
	CredletImage    = "ghcr.io/credlet/credlet:dev"
	TradingBotImage = "registry.example.test/acme/tradingbot:1.0"
	LegacyAppImage  = "registry.example.test/acme/legacy-app:1.0"
	PodCheckImage   = "credlet.test/podcheck:1"
)

// Busybox is the static busybox of Debian's busybox-static package: the
// shell of the legacy app's image (the example app is a shell script).
const Busybox = "/bin/busybox"

// ModuleRoot returns the root of the credlet module (the folder of go.mod)
// that the current directory is in.
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the credlet module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}

// BuildBinaries builds each package (relative to the module root, e.g.
// "./agent") as a static binary named by its key into dir.
func BuildBinaries(ctx context.Context, root, dir string, pkgs map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for name, pkg := range pkgs {
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", filepath.Join(dir, name), pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("go build %s: %w: %s", pkg, err, bytes.TrimSpace(out.Bytes()))
		}
	}
	return nil
}

// BuildImages builds the project's binaries into dir/bin and writes the
// cluster's images into dir/images.tar: the pause image, the credlet image
// (agent and injector, user 65532, no shell), the Go trading bot, the
// legacy shell app on busybox, and podcheck (the tests' probe). It returns
// the archive's path.
func BuildImages(ctx context.Context, root, dir string) (string, error) {
	bin := filepath.Join(dir, "bin")
	err := BuildBinaries(ctx, root, bin, map[string]string{
		"pause":            "./internal/cluster/cmd/pause",
		"credlet-agent":    "./agent",
		"credlet-injector": "./injector",
		"tradingbot":       "./examples/tradingbot",
		"podcheck":         "./internal/cluster/cmd/podcheck",
	})
	if err != nil {
		return "", err
	}
	if _, err := os.Stat(Busybox); err != nil {
		return "", fmt.Errorf("%s: %w (the legacy app's image needs Debian's busybox-static)", Busybox, err)
	}
	nonroot := "65532:65532"
	imgs := []images.Image{
		{Ref: PauseImage, User: "65535:65535", Entrypoint: []string{"/pause"},
			Files: []images.File{{Path: "/pause", Source: filepath.Join(bin, "pause")}}},
		{Ref: CredletImage, User: nonroot, Entrypoint: []string{"/credlet-agent"},
			Files: []images.File{
				{Path: "/credlet-agent", Source: filepath.Join(bin, "credlet-agent")},
				{Path: "/credlet-injector", Source: filepath.Join(bin, "credlet-injector")},
			}},
		{Ref: TradingBotImage, User: nonroot, Entrypoint: []string{"/tradingbot"},
			Files: []images.File{{Path: "/tradingbot", Source: filepath.Join(bin, "tradingbot")}}},
		{Ref: PodCheckImage, User: nonroot, Entrypoint: []string{"/podcheck"},
			Files: []images.File{{Path: "/podcheck", Source: filepath.Join(bin, "podcheck")}}},
		legacyAppImage(root),
	}
	archive := filepath.Join(dir, "images.tar")
	if err := images.WriteFile(archive, imgs...); err != nil {
		return "", err
	}
	return archive, nil
}

// legacyAppImage is examples/legacy-app/legacy-app on busybox: /bin/sh and
// the few tools the script runs, all links to one static busybox.
func legacyAppImage(root string) images.Image {
	files := []images.File{
		{Path: "/bin/busybox", Source: Busybox},
		{Path: "/usr/local/bin/legacy-app", Source: filepath.Join(root, "examples/legacy-app/legacy-app")},
		{Path: "/tmp", Dir: true, Mode: 0o1777},
	}
	for _, tool := range []string{"sh", "cat", "sed", "tr", "sleep", "echo", "ls", "id"} {
		files = append(files, images.File{Path: "/bin/" + tool, Link: "busybox"})
	}
	return images.Image{Ref: LegacyAppImage, User: "10002:10002", Entrypoint: []string{"/usr/local/bin/legacy-app"},
		Env: []string{"PATH=/bin:/usr/local/bin"}, Files: files}
}
