package manifests

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	kusttypes "sigs.k8s.io/kustomize/api/types"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

// root is the repository, seen from this package's directory.
const root = ".."

// doc is one YAML document of one file.
type doc struct {
	file       string // relative to the repository
	index      int    // position in the file
	raw        []byte
	apiVersion string
	kind       string
	name       string
	namespace  string
}

func (d doc) String() string { return fmt.Sprintf("%s#%d (%s %s)", d.file, d.index, d.kind, d.name) }

// loadDocs reads every *.yaml / *.yml document under the given directories
// (relative to the repository).
func loadDocs(t *testing.T, dirs ...string) []doc {
	t.Helper()
	var out []doc
	for _, dir := range dirs {
		err := filepath.WalkDir(filepath.Join(root, dir), func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			r := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(b)))
			for i := 0; ; i++ {
				raw, err := r.Read()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					return fmt.Errorf("%s: %w", rel, err)
				}
				if len(bytes.TrimSpace(stripComments(raw))) == 0 {
					continue
				}
				var meta struct {
					APIVersion string `json:"apiVersion"`
					Kind       string `json:"kind"`
					Metadata   struct {
						Name      string `json:"name"`
						Namespace string `json:"namespace"`
					} `json:"metadata"`
				}
				if err := yaml.Unmarshal(raw, &meta); err != nil {
					return fmt.Errorf("%s#%d: %w", rel, i, err)
				}
				out = append(out, doc{file: rel, index: i, raw: raw, apiVersion: meta.APIVersion, kind: meta.Kind,
					name: meta.Metadata.Name, namespace: meta.Metadata.Namespace})
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no YAML under %v", dirs)
	}
	return out
}

func stripComments(b []byte) []byte {
	var out []byte
	for l := range bytes.Lines(b) {
		if t := bytes.TrimSpace(l); len(t) > 0 && t[0] != '#' {
			out = append(out, l...)
		}
	}
	return out
}

// Kinds outside client-go's scheme, decoded strictly into local types that
// name the fields these manifests use.

// kustomization is kustomize's own type, so every field kustomize accepts
// decodes and a typo still fails.
type kustomization = kusttypes.Kustomization

type issuer struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
	} `json:"spec"`
}

type certificate struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		IsCA        bool     `json:"isCA,omitempty"`
		CommonName  string   `json:"commonName,omitempty"`
		SecretName  string   `json:"secretName"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm,omitempty"`
			Size           int    `json:"size,omitempty"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef struct {
			Name  string `json:"name"`
			Kind  string `json:"kind,omitempty"`
			Group string `json:"group,omitempty"`
		} `json:"issuerRef"`
	} `json:"spec"`
}

type prometheusRule struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		Groups []struct {
			Name  string           `json:"name"`
			Rules []map[string]any `json:"rules"`
		} `json:"groups"`
	} `json:"spec"`
}

// decode turns a document into its typed object, failing on unknown fields.
func decode(d doc) (any, error) {
	if d.apiVersion == "" || d.kind == "" {
		return nil, errors.New("no apiVersion/kind")
	}
	gvk := schema.FromAPIVersionAndKind(d.apiVersion, d.kind)
	var obj any
	switch {
	case gvk.Group == "kustomize.config.k8s.io" && d.kind == "Kustomization":
		obj = &kustomization{}
	case gvk.Group == "cert-manager.io" && (d.kind == "Issuer" || d.kind == "ClusterIssuer"):
		obj = &issuer{}
	case gvk.Group == "cert-manager.io" && d.kind == "Certificate":
		obj = &certificate{}
	case gvk.Group == "monitoring.coreos.com" && d.kind == "PrometheusRule":
		obj = &prometheusRule{}
	default:
		o, err := scheme.Scheme.New(gvk)
		if err != nil {
			return nil, fmt.Errorf("unknown kind %s: %w", gvk, err)
		}
		obj = o
	}
	if err := yaml.UnmarshalStrict(d.raw, obj); err != nil {
		return nil, err
	}
	if _, ok := obj.(runtime.Object); ok && d.name == "" {
		return nil, errors.New("no metadata.name")
	}
	return obj, nil
}

// typed returns the single document of kind in file, decoded.
func typed[T any](t *testing.T, docs []doc, file, kind string) T {
	t.Helper()
	var found []T
	for _, d := range docs {
		if d.file == filepath.FromSlash(file) && d.kind == kind {
			obj, err := decode(d)
			if err != nil {
				t.Fatalf("%s: %v", d, err)
			}
			found = append(found, obj.(T))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s: %d documents of kind %s, want 1", file, len(found), kind)
	}
	return found[0]
}
