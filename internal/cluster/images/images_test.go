package images

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// TestWriteReadBack writes an archive of two images and reads each back:
// its config (user, entrypoint, platform) and its one layer's entries,
// parents first, with modes and a symlink as given.
func TestWriteReadBack(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "prog")
	if err := os.WriteFile(bin, []byte("\x7fELF-FAKE"), 0o700); err != nil {
		t.Fatal(err)
	}
	archive := filepath.Join(dir, "images.tar")
	err := WriteFile(archive,
		Image{Ref: "credlet.test/a:1", User: "65532:65532", Entrypoint: []string{"/prog"},
			Files: []File{{Path: "/prog", Source: bin}}},
		Image{Ref: "credlet.test/b:2", Files: []File{
			{Path: "/usr/local/bin/x", Data: []byte("hi"), Mode: 0o555},
			{Path: "/bin/sh", Link: "busybox"},
		}},
	)
	if err != nil {
		t.Fatal(err)
	}
	tag, _ := name.NewTag("credlet.test/a:1")
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || len(cf.Config.Entrypoint) != 1 || cf.Config.Entrypoint[0] != "/prog" || cf.OS != "linux" || cf.Architecture == "" {
		t.Errorf("config: %+v os %s arch %s", cf.Config, cf.OS, cf.Architecture)
	}
	entries := layerEntries(t, archive, "credlet.test/b:2")
	want := []string{"bin dir 0755", "bin/sh link busybox", "usr dir 0755", "usr/local dir 0755", "usr/local/bin dir 0755", "usr/local/bin/x file 0555 2"}
	if len(entries) != len(want) {
		t.Fatalf("entries %q, want %q", entries, want)
	}
	for i := range want {
		if entries[i] != want[i] {
			t.Errorf("entry %d: %q, want %q", i, entries[i], want[i])
		}
	}
}

func layerEntries(t *testing.T, archive, ref string) []string {
	t.Helper()
	tag, _ := name.NewTag(ref)
	img, err := tarball.ImageFromPath(archive, &tag)
	if err != nil {
		t.Fatal(err)
	}
	rc := mutate.Extract(img)
	defer rc.Close()
	tr := tar.NewReader(rc)
	var out []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		var b bytes.Buffer
		_, _ = io.Copy(&b, tr)
		switch h.Typeflag {
		case tar.TypeDir:
			out = append(out, h.Name+" dir "+mode(h.Mode))
		case tar.TypeSymlink:
			out = append(out, h.Name+" link "+h.Linkname)
		default:
			out = append(out, h.Name+" file "+mode(h.Mode)+" "+itoa(b.Len()))
		}
	}
}

func mode(m int64) string { return fmt.Sprintf("%04o", m) }
func itoa(n int) string   { return strconv.Itoa(n) }

func TestInvalid(t *testing.T) {
	for _, im := range []Image{
		{Ref: "x/y:1", Files: []File{{Path: "relative", Data: []byte("a")}}},
		{Ref: "x/y:1", Files: []File{{Path: "/a", Data: []byte("a")}, {Path: "/a/b", Data: []byte("b")}}},
		{Ref: "x/y:1", Files: []File{{Path: "/a", Data: []byte("a")}, {Path: "/a", Data: []byte("b")}}},
		{Ref: "UPPER CASE", Files: []File{{Path: "/a", Data: []byte("a")}}},
	} {
		if err := Write(io.Discard, im); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: err %v, want ErrInvalid", im, err)
		}
	}
}
