package mutate

import (
	"context"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/credlet/credlet/internal/injectorconfig"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.yaml")

func testConfig(t testing.TB) *injectorconfig.Config {
	t.Helper()
	cfg, err := injectorconfig.Load(filepath.Join("testdata", "config.yaml"), injectorconfig.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func testHandler(t testing.TB) *Handler {
	return &Handler{Config: testConfig(t), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// podRequest wraps a pod's JSON as the apiserver would send it.
func podRequest(namespace string, raw []byte) *admissionv1.AdmissionRequest {
	return &admissionv1.AdmissionRequest{
		UID:       types.UID("0b5e1e8c-0000-4000-8000-00000000fake"),
		Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "Pod"},
		Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "pods"},
		Namespace: namespace,
		Operation: admissionv1.Create,
		Object:    runtime.RawExtension{Raw: raw},
	}
}

// applyResponse applies the response's patch to the original JSON, as the
// apiserver does.
func applyResponse(t *testing.T, original []byte, resp *admissionv1.AdmissionResponse) []byte {
	t.Helper()
	if !resp.Allowed {
		t.Fatalf("denied: %v", resp.Result)
	}
	if len(resp.Patch) == 0 {
		return original
	}
	if resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("patch type %v", resp.PatchType)
	}
	patch, err := jsonpatch.DecodePatch(resp.Patch)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	out, err := patch.Apply(original)
	if err != nil {
		t.Fatalf("apply patch: %v", err)
	}
	return out
}

func TestGolden(t *testing.T) {
	h := testHandler(t)
	tests := []struct {
		name      string
		namespace string
	}{
		{"native-minimal", "partner-acme"},
		{"native-multi", "partner-acme"},
		{"classic-files", "partner-zeta"},
		{"classic-socket", "partner-zeta"}, // no init container: nothing to fill before the app starts
		{"approle-socket", "dev"},
		{"jwt-files", "fleet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := os.ReadFile(filepath.Join("testdata", tt.name+".pod.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			original, err := yaml.YAMLToJSON(in)
			if err != nil {
				t.Fatal(err)
			}
			resp := h.Admit(context.Background(), podRequest(tt.namespace, original))
			if len(resp.Patch) == 0 {
				t.Fatalf("no patch: %+v", resp)
			}
			patched := applyResponse(t, original, resp)
			got, err := yaml.JSONToYAML(patched)
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join("testdata", tt.name+".golden.yaml")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if diff := cmp.Diff(string(want), string(got)); diff != "" {
				t.Errorf("patched pod differs from %s (-want +got):\n%s", golden, diff)
			}
			// The patched pod decodes into a Pod, and a second admission
			// (reinvocation, or re-creation from it) changes nothing.
			var pod corev1.Pod
			if err := json.Unmarshal(patched, &pod); err != nil {
				t.Fatalf("patched pod does not decode: %v", err)
			}
			again := h.Admit(context.Background(), podRequest(tt.namespace, patched))
			if !again.Allowed || len(again.Patch) != 0 {
				t.Errorf("second admission: allowed=%v patch=%s", again.Allowed, again.Patch)
			}
		})
	}
}
