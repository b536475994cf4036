package images

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// ErrInvalid is wrapped by every error about an Image that cannot be built
// as described.
var ErrInvalid = errors.New("images: invalid image")

// Image is one image to write.
type Image struct {
	Ref        string   // name:tag, e.g. "ghcr.io/credlet/credlet:v0.1.0"
	Files      []File   // the image's whole file system
	Entrypoint []string // OCI config Entrypoint
	Cmd        []string // OCI config Cmd
	User       string   // "uid:gid"; empty runs as root
	Env        []string // KEY=value
	WorkingDir string
}

// File is one entry of an image's file system. Parent directories are
// created (0755, root-owned) when not listed.
type File struct {
	Path   string // absolute path inside the image
	Source string // host file whose content is copied; empty for Data or Link
	Data   []byte // content when Source is empty and Link is empty
	Link   string // symlink target; makes the entry a symlink
	Mode   int64  // permission bits; 0 means 0755 for Source, 0644 for Data
	Dir    bool   // a directory (Mode defaults to 0755)
}

// epoch is every entry's mtime and the image's creation time, so the same
// inputs give the same image digest.
var epoch = time.Unix(0, 0).UTC()

// Write writes imgs as one docker-archive tarball to w.
func Write(w io.Writer, imgs ...Image) error {
	refs := make(map[name.Reference]v1.Image, len(imgs))
	for _, im := range imgs {
		ref, err := name.ParseReference(im.Ref, name.WeakValidation)
		if err != nil {
			return fmt.Errorf("%w: %q: ref: %v", ErrInvalid, im.Ref, err)
		}
		img, err := Build(im)
		if err != nil {
			return err
		}
		refs[ref] = img
	}
	if err := tarball.MultiRefWrite(refs, w); err != nil {
		return fmt.Errorf("images: write archive: %w", err)
	}
	return nil
}

// WriteFile is Write to a new file at path (0600).
func WriteFile(path string, imgs ...Image) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("images: %w", err)
	}
	if err := Write(f, imgs...); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("images: %w", err)
	}
	return nil
}

// Build returns im as a v1.Image for linux on this machine's architecture.
func Build(im Image) (v1.Image, error) {
	layerTar, err := layerTarball(im.Files)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalid, im.Ref, err)
	}
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(layerTar)), nil
	}, tarball.WithCompressionLevel(gzip.BestSpeed))
	if err != nil {
		return nil, fmt.Errorf("images: %s: layer: %w", im.Ref, err)
	}
	img, err := mutate.AppendLayers(empty.Image, layer)
	if err != nil {
		return nil, fmt.Errorf("images: %s: %w", im.Ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("images: %s: %w", im.Ref, err)
	}
	cf = cf.DeepCopy()
	cf.OS = "linux"
	cf.Architecture = runtime.GOARCH
	cf.Created = v1.Time{Time: epoch}
	cf.Config.Entrypoint = im.Entrypoint
	cf.Config.Cmd = im.Cmd
	cf.Config.User = im.User
	cf.Config.Env = im.Env
	cf.Config.WorkingDir = im.WorkingDir
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		return nil, fmt.Errorf("images: %s: %w", im.Ref, err)
	}
	return img, nil
}

// layerTarball returns the uncompressed tar of files, parents first.
func layerTarball(files []File) ([]byte, error) {
	entries := map[string]File{}
	for _, f := range files {
		p := path.Clean("/" + f.Path)
		if p == "/" || !strings.HasPrefix(f.Path, "/") {
			return nil, fmt.Errorf("file path %q: must be absolute and not /", f.Path)
		}
		if _, dup := entries[p]; dup {
			return nil, fmt.Errorf("file path %q listed twice", p)
		}
		f.Path = p
		entries[p] = f
	}
	listed := make([]string, 0, len(entries))
	for p := range entries {
		listed = append(listed, p)
	}
	for _, p := range listed {
		for d := path.Dir(p); d != "/"; d = path.Dir(d) {
			e, ok := entries[d]
			if ok && !e.Dir {
				return nil, fmt.Errorf("file path %q: %s is not a directory", p, d)
			}
			if !ok {
				entries[d] = File{Path: d, Dir: true}
			}
		}
	}
	paths := make([]string, 0, len(entries))
	for p := range entries {
		paths = append(paths, p)
	}
	sort.Strings(paths) // a parent sorts before its children

	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, p := range paths {
		f := entries[p]
		h := &tar.Header{Name: strings.TrimPrefix(p, "/"), ModTime: epoch, Format: tar.FormatPAX}
		var body []byte
		switch {
		case f.Dir:
			if f.Source != "" || f.Link != "" || f.Data != nil {
				return nil, fmt.Errorf("%s: a directory has no content", p)
			}
			h.Typeflag, h.Name, h.Mode = tar.TypeDir, h.Name+"/", orMode(f.Mode, 0o755)
		case f.Link != "":
			h.Typeflag, h.Linkname, h.Mode = tar.TypeSymlink, f.Link, 0o777
		case f.Source != "":
			b, err := os.ReadFile(f.Source)
			if err != nil {
				return nil, err
			}
			body = b
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, orMode(f.Mode, 0o755), int64(len(b))
		default:
			body = f.Data
			h.Typeflag, h.Mode, h.Size = tar.TypeReg, orMode(f.Mode, 0o644), int64(len(f.Data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := tw.Write(body); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

func orMode(m, def int64) int64 {
	if m == 0 {
		return def
	}
	return m
}
