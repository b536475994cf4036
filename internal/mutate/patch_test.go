package mutate

import (
	"encoding/json"
	"testing"

	"gomodules.xyz/jsonpatch/v2"
)

func TestEncodePatchMatchesMarshal(t *testing.T) {
	tests := []struct {
		name string
		ops  []jsonpatch.Operation
	}{
		{"empty", []jsonpatch.Operation{}},
		{"add object", []jsonpatch.Operation{jsonpatch.NewOperation("add", "/spec/initContainers/0", map[string]any{"name": "credlet-agent", "args": []any{"run", "--x=<&>"}})}},
		{"add null", []jsonpatch.Operation{jsonpatch.NewOperation("add", "/metadata/creationTimestamp", nil)}},
		{"replace null", []jsonpatch.Operation{jsonpatch.NewOperation("replace", "/a", nil)}},
		{"remove", []jsonpatch.Operation{jsonpatch.NewOperation("remove", "/metadata/annotations/credlet.io~1x", nil)}},
		{"several", []jsonpatch.Operation{
			jsonpatch.NewOperation("add", "/metadata/annotations/credlet.io~1status", "injected"),
			jsonpatch.NewOperation("replace", "/spec/containers/0/env/0/value", json.Number("7")),
			jsonpatch.NewOperation("add", "/x", false),
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want, err := json.Marshal(tt.ops)
			if err != nil {
				t.Fatal(err)
			}
			got, err := encodePatch(tt.ops)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != string(want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}
