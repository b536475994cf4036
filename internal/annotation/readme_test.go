package annotation

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite README.md's annotation table from the schema")

const (
	beginMarker = "<!-- annotations:begin -->"
	endMarker   = "<!-- annotations:end -->"
)

// spliceREADME returns readme with the text between the markers replaced by
// table; without markers it appends an "## Annotations" section holding them.
func spliceREADME(readme []byte, table string) []byte {
	block := []byte(beginMarker + "\n" + table + endMarker)
	b := bytes.Index(readme, []byte(beginMarker))
	e := bytes.Index(readme, []byte(endMarker))
	if b < 0 || e < b {
		out := bytes.TrimRight(readme, "\n")
		out = append(out, "\n\n## Annotations\n\n"...)
		out = append(out, block...)
		return append(out, '\n')
	}
	out := append([]byte{}, readme[:b]...)
	out = append(out, block...)
	return append(out, readme[e+len(endMarker):]...)
}

// TestREADMEAnnotations fails when README.md's annotation table differs from
// the schema. Fix: go generate ./internal/annotation (or go test -update).
func TestREADMEAnnotations(t *testing.T) {
	path := filepath.Join("..", "..", "README.md")
	readme, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read README: %v", err)
	}
	want := spliceREADME(readme, Markdown())
	if bytes.Equal(readme, want) {
		return
	}
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("rewrote %s", path)
		return
	}
	t.Errorf("README.md's annotation table is out of date with the schema; run: go generate ./internal/annotation")
}

func TestSpliceREADME(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"no markers appends a section", "# x\n\ntext\n", "# x\n\ntext\n\n## Annotations\n\n" + beginMarker + "\nT\n" + endMarker + "\n"},
		{"replaces between markers only", "a\n" + beginMarker + "\nold\n" + endMarker + "\nz\n", "a\n" + beginMarker + "\nT\n" + endMarker + "\nz\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(spliceREADME([]byte(tt.in), "T\n")); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
