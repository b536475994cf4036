package mutate

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	jsonpatch "github.com/evanphx/json-patch/v5"
	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// referenceCase is one pod for TestPatchMatchesReference.
type referenceCase struct {
	name      string
	namespace string
	raw       []byte
	// typedOnly, when set, says why the reference diff's result differs
	// from the direct patch's as JSON; both must still decode to the
	// mutated pod.
	typedOnly string
	// referenceBroken, when set, says why the reference diff's patch is
	// wrong for this pod; the direct patch must give the mutated pod.
	referenceBroken string
}

// podJSON is a pod for namespace partner-acme (native sidecar, socket and
// files by default) with the given metadata and spec members, written as
// JSON so absent, null and empty members can be told apart.
func podJSON(annotations, spec string) []byte {
	meta := `"name":"bot","labels":{"app":"bot","credlet.io/inject":"true"}`
	if annotations != "" {
		meta += `,"annotations":` + annotations
	}
	s := `{"apiVersion":"v1","kind":"Pod","metadata":{` + meta + `}`
	if spec != "" {
		s += `,"spec":` + spec
	}
	return []byte(s + `}`)
}

const (
	acmeAnn  = `{"credlet.io/role":"acme-bot","credlet.io/credential.exa":"secret/partners/acme/exa"}`
	appBot   = `{"name":"bot","image":"registry.example.test/bot:1"}`
	runAs    = `"securityContext":{"runAsUser":1000,"runAsGroup":3000}`
	oneApp   = `"containers":[` + appBot + `]`
	acmeSpec = `{` + runAs + `,` + oneApp + `}`
)

// withAnn is acmeAnn plus more annotations (a JSON object's members).
func withAnn(members string) string {
	return strings.TrimSuffix(acmeAnn, "}") + "," + members + "}"
}

func referenceCorpus(t *testing.T) []referenceCase {
	t.Helper()
	var cases []referenceCase
	fixture := func(dir, name, namespace string) {
		y, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := yaml.YAMLToJSON(y)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, referenceCase{name: "fixture " + name + " in " + namespace, namespace: namespace, raw: raw})
	}
	for name, ns := range map[string]string{
		"native-minimal": "partner-acme", "native-multi": "partner-acme", "classic-files": "partner-zeta",
		"classic-socket": "partner-zeta", "approle-socket": "dev", "jwt-files": "fleet",
	} {
		fixture("testdata", name+".pod.yaml", ns)
	}
	fixture(filepath.Join("..", "webhook", "testdata"), "bench-pod.yaml", "partner-acme")
	odd := func(name, namespace, annotations, spec string) *referenceCase {
		cases = append(cases, referenceCase{name: name, namespace: namespace, raw: podJSON(annotations, spec)})
		return &cases[len(cases)-1]
	}
	odd("plain", "partner-acme", acmeAnn, acmeSpec)
	odd("classic sidecar, socket only", "partner-acme", withAnn(`"credlet.io/sidecar":"classic","credlet.io/delivery":"socket"`), acmeSpec)
	odd("classic sidecar, files only", "partner-acme", withAnn(`"credlet.io/sidecar":"classic","credlet.io/delivery":"files"`), acmeSpec)
	odd("no containers array, uid annotation", "partner-acme", withAnn(`"credlet.io/uid":"1000"`), `{"volumes":[{"name":"cache","emptyDir":{}}]}`)
	odd("no containers array, classic sidecar", "partner-acme", withAnn(`"credlet.io/uid":"1000","credlet.io/sidecar":"classic"`), `{"serviceAccountName":"bot"}`)
	odd("null arrays", "partner-acme", acmeAnn, `{`+runAs+`,"initContainers":null,"volumes":null,"containers":[{"name":"bot","image":"b","env":null,"volumeMounts":null}]}`)
	odd("empty arrays", "partner-acme", acmeAnn, `{`+runAs+`,"initContainers":[],"volumes":[],"containers":[{"name":"bot","image":"b","env":[],"volumeMounts":[]}]}`)
	odd("empty spec, uid annotation", "partner-acme", withAnn(`"credlet.io/uid":"1000"`), `{}`)
	odd("null spec, uid annotation", "partner-acme", withAnn(`"credlet.io/uid":"1000"`), `null`).referenceBroken =
		"the diff adds spec three times, each add replacing the one before"
	odd("no spec, uid annotation", "partner-acme", withAnn(`"credlet.io/uid":"1000"`), "").referenceBroken =
		"the diff adds spec three times, each add replacing the one before"
	odd("existing init containers", "partner-acme", acmeAnn, `{`+runAs+`,"initContainers":[{"name":"migrate","image":"m"},{"name":"warm","image":"w"}],`+oneApp+`}`)
	odd("init container as a target, native", "partner-acme", withAnn(`"credlet.io/containers":"warm,bot"`),
		`{`+runAs+`,"initContainers":[{"name":"migrate","image":"m"},{"name":"warm","image":"w","env":[{"name":"A","value":"1"}]}],`+oneApp+`}`)
	odd("init container as a target, classic", "partner-acme", withAnn(`"credlet.io/containers":"warm","credlet.io/sidecar":"classic"`),
		`{`+runAs+`,"initContainers":[{"name":"warm","image":"w","volumeMounts":[{"name":"cache","mountPath":"/cache"}]}],`+oneApp+`,"volumes":[{"name":"cache","emptyDir":{}}]}`)
	odd("existing volumes and mounts", "partner-acme", acmeAnn,
		`{`+runAs+`,"containers":[{"name":"bot","image":"b","volumeMounts":[{"name":"a","mountPath":"/a"},{"name":"b","mountPath":"/b"}]}],"volumes":[{"name":"a","emptyDir":{}},{"name":"b","emptyDir":{}}]}`)
	odd("volume with a clashing name", "partner-acme", acmeAnn, `{`+runAs+`,`+oneApp+`,"volumes":[{"name":"credlet-run","emptyDir":{}}]}`)
	odd("mount overlapping the socket directory", "partner-acme", acmeAnn,
		`{`+runAs+`,"containers":[{"name":"bot","image":"b","volumeMounts":[{"name":"x","mountPath":"/credlet"}]}]}`)
	odd("env already set to credlet's values", "partner-acme", acmeAnn,
		`{`+runAs+`,"containers":[{"name":"bot","image":"b","env":[{"name":"X","value":"1"},{"name":"CREDLET_SOCKET","value":"/credlet/run/agent.sock"}]}]}`)
	odd("env set to another value", "partner-acme", acmeAnn,
		`{`+runAs+`,"containers":[{"name":"bot","image":"b","env":[{"name":"CREDLET_SOCKET","value":"/tmp/s"}]}]}`)
	odd("two app containers, one targeted", "partner-acme", withAnn(`"credlet.io/containers":"web"`),
		`{`+runAs+`,"containers":[`+appBot+`,{"name":"web","image":"w"}]}`)
	odd("duplicate container names", "partner-acme", acmeAnn, `{`+runAs+`,"containers":[`+appBot+`,`+appBot+`]}`).typedOnly =
		"without unique names the diff compares the first container with its typed encoding, which adds resources: {}"
	odd("annotations absent", "partner-acme", "", acmeSpec)
	odd("annotations null", "partner-acme", "null", acmeSpec)
	odd("annotations empty", "partner-acme", "{}", acmeSpec)
	odd("annotation keys with ~ and /", "partner-acme", withAnn(`"example.test/a~b":"1","a~1b/c~0":"2","~":"3","/":"4"`), acmeSpec)
	odd("status annotation already set", "partner-acme", withAnn(`"credlet.io/status":"injected"`), acmeSpec)
	odd("service account empty string", "partner-acme", acmeAnn, `{`+runAs+`,"serviceAccountName":"",`+oneApp+`}`)
	odd("service account empty string, approle", "dev",
		`{"credlet.io/auth":"approle","credlet.io/approle-secret":"bot-approle","credlet.io/credential.feed":"kv/dev/feed"}`,
		`{`+runAs+`,"serviceAccountName":"",`+oneApp+`}`).typedOnly = "the diff removes the empty serviceAccountName, the direct patch leaves it; both decode alike"
	odd("unknown fields", "partner-acme", acmeAnn,
		`{"futureField":{"x":1},`+runAs+`,"containers":[{"name":"bot","image":"b","futureContainerField":true,"env":[{"name":"A","value":"1"}]}]}`)
	odd("fields as the typed encoding never spells them", "partner-acme", acmeAnn,
		`{"hostNetwork":false,"nodeSelector":{},`+runAs+`,"containers":[{"name":"bot","image":"b","args":[],"resources":{},"stdin":false}]}`)
	odd("not labelled", "partner-acme", acmeAnn, acmeSpec)
	cases[len(cases)-1].raw = bytes.Replace(cases[len(cases)-1].raw, []byte(`"credlet.io/inject":"true"`), []byte(`"credlet.io/inject":"false"`), 1)
	odd("bad annotation", "partner-acme", withAnn(`"credlet.io/delivery":"smoke"`), acmeSpec)
	odd("namespace not configured", "default", acmeAnn, acmeSpec)
	return cases
}

// TestPatchMatchesReference: for every pod of the corpus, the Handler's
// patch applied to the pod gives the pod Mutate returns, and (unless the
// case says why not) exactly the JSON the previous path, a diff of the
// original and mutated pods, gives. Pods that are denied or left alone get
// the same answer as Mutate's.
func TestPatchMatchesReference(t *testing.T) {
	h := testHandler(t)
	for _, tt := range referenceCorpus(t) {
		t.Run(tt.name, func(t *testing.T) {
			resp := h.Admit(context.Background(), podRequest(tt.namespace, tt.raw))
			var pod corev1.Pod
			unknown, err := kjson.UnmarshalStrict(tt.raw, &pod, kjson.DisallowUnknownFields)
			if err != nil {
				t.Fatal(err)
			}
			mutated, err := Mutate(&pod, tt.namespace, h.Config)
			switch {
			case err != nil:
				if resp.Allowed || resp.Result == nil || resp.Result.Message != err.Error() {
					t.Fatalf("Mutate denies with %q; the Handler answered %+v", err, resp.Result)
				}
				return
			case mutated == nil:
				if !resp.Allowed || len(resp.Patch) != 0 {
					t.Fatalf("Mutate leaves the pod alone; the Handler answered allowed=%v patch=%s", resp.Allowed, resp.Patch)
				}
				return
			}
			got := applyResponse(t, tt.raw, resp)
			var gotPod corev1.Pod
			if err := json.Unmarshal(got, &gotPod); err != nil {
				t.Fatalf("patched pod does not decode: %v", err)
			}
			if diff := cmp.Diff(mustJSON(t, mutated), mustJSON(t, &gotPod)); diff != "" {
				t.Errorf("patched pod differs from Mutate's (-Mutate +patched):\n%s\npatch: %s", diff, resp.Patch)
			}
			ref, err := referencePatch(tt.raw, &pod, mutated, len(unknown) > 0)
			if err != nil {
				t.Fatalf("reference patch: %v", err)
			}
			want := applyPatch(t, tt.raw, ref)
			var wantPod corev1.Pod
			if err := json.Unmarshal(want, &wantPod); err != nil {
				t.Fatalf("reference-patched pod does not decode: %v", err)
			}
			if tt.referenceBroken != "" {
				if mustJSON(t, &wantPod) == mustJSON(t, mutated) {
					t.Fatalf("the case says the reference is wrong (%s), but it gives Mutate's pod", tt.referenceBroken)
				}
				t.Logf("reference not compared: %s", tt.referenceBroken)
				return
			}
			if diff := cmp.Diff(mustJSON(t, &wantPod), mustJSON(t, &gotPod)); diff != "" {
				t.Errorf("decoded, the pods differ (-reference +direct):\n%s", diff)
			}
			diff := cmp.Diff(decodeAny(t, want), decodeAny(t, got))
			if tt.typedOnly != "" {
				if diff == "" {
					t.Fatalf("the case says the JSON differs (%s), but it is the same", tt.typedOnly)
				}
				t.Logf("JSON not compared: %s", tt.typedOnly)
				return
			}
			if diff != "" {
				t.Errorf("patched JSON differs (-reference +direct):\n%s\nreference patch: %s\ndirect patch: %s", diff, ref, resp.Patch)
			}
		})
	}
}

func applyPatch(t *testing.T, original, patch []byte) []byte {
	t.Helper()
	p, err := jsonpatch.DecodePatch(patch)
	if err != nil {
		t.Fatalf("decode patch: %v", err)
	}
	out, err := p.Apply(original)
	if err != nil {
		t.Fatalf("apply patch %s: %v", patch, err)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}
