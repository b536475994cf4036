package mutate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	"gomodules.xyz/jsonpatch/v2"
	corev1 "k8s.io/api/core/v1"
)

// This file keeps the injector's previous patch path as the reference the
// direct patch (patch.go) is checked against: the JSON-patch library's diff
// of the parts of the pod the mutation changes, between the original and the
// mutated pod. TestPatchMatchesReference applies both patches to a corpus of
// pods and compares the results.

// referencePatch is the previous Handler's patch: the diff of the original
// and mutated pods (see diffPod), encoded. When the pod carries fields these
// Go types don't know, the diff is taken from the typed round trip, and must
// apply to the raw object cleanly.
func referencePatch(raw []byte, pod, mutated *corev1.Pod, hasUnknown bool) ([]byte, error) {
	original := raw
	if hasUnknown {
		var err error
		if original, err = json.Marshal(pod); err != nil {
			return nil, fmt.Errorf("encode pod: %w", err)
		}
	}
	ops, err := diffPod(original, pod, mutated)
	if err != nil {
		return nil, fmt.Errorf("diff pods: %w", err)
	}
	out, err := encodePatch(ops)
	if err != nil || !hasUnknown {
		return out, err
	}
	p, err := jsonpatchapply.DecodePatch(out)
	if err == nil {
		_, err = p.Apply(raw)
	}
	if err != nil {
		return nil, fmt.Errorf("the patch would not keep unknown fields: %w", err)
	}
	return out, nil
}

// diffPod returns the JSON patch from original (the pod as the apiserver
// sent it, or its typed round trip) to mutated, diffing with the JSON-patch
// library only the parts of a pod Apply changes: metadata.annotations,
// spec.initContainers, spec.containers, spec.volumes and
// spec.serviceAccountName. Array elements are matched by name, so the agent
// inserted first is one add, and an element (or a whole part) whose typed
// encoding did not change is skipped without decoding it. Diffing the whole pods decoded both into generic maps
// for parts that never change, most of an admission's CPU.
//
// pod is original decoded, unchanged by the mutation. Everything outside the
// parts above is equal in pod and mutated, so the patch applied to original
// gives mutated there too (up to how the typed encoding spells fields
// original leaves out, which the patch no longer adds).
func diffPod(original []byte, pod, mutated *corev1.Pod) ([]jsonpatch.Operation, error) {
	var top struct {
		Metadata map[string]json.RawMessage `json:"metadata"`
		Spec     map[string]json.RawMessage `json:"spec"`
	}
	if err := json.Unmarshal(original, &top); err != nil {
		return nil, fmt.Errorf("decode pod: %w", err)
	}
	d := differ{}
	d.member("/metadata", top.Metadata, "annotations", pod.Annotations, mutated.Annotations, len(mutated.Annotations) == 0)
	d.array("/spec", top.Spec, "initContainers", pod.Spec.InitContainers, mutated.Spec.InitContainers)
	d.array("/spec", top.Spec, "containers", pod.Spec.Containers, mutated.Spec.Containers)
	d.array("/spec", top.Spec, "volumes", pod.Spec.Volumes, mutated.Spec.Volumes)
	d.member("/spec", top.Spec, "serviceAccountName", pod.Spec.ServiceAccountName, mutated.Spec.ServiceAccountName, mutated.Spec.ServiceAccountName == "")
	return d.ops, d.err
}

type differ struct {
	ops []jsonpatch.Operation
	err error
}

func (d *differ) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// member diffs parent[key]: was (typed) and now; empty says now is left
// out of the typed encoding (omitempty).
func (d *differ) member(parentPath string, parent map[string]json.RawMessage, key string, was, now any, empty bool) {
	if d.err != nil {
		return
	}
	path := parentPath + "/" + escape(key)
	raw, had := parent[key]
	had = had && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
	switch {
	case !had && empty:
		return
	case had && empty:
		d.ops = append(d.ops, jsonpatch.NewOperation("remove", path, nil))
		return
	}
	nowJSON, err := json.Marshal(now)
	if err != nil {
		d.fail(fmt.Errorf("encode %s: %w", path, err))
		return
	}
	if !had {
		d.add(parentPath, parent, key, nowJSON)
		return
	}
	if same(was, nowJSON) {
		return
	}
	if m, ok := now.(map[string]string); ok && d.stringMap(path, raw, m) {
		return
	}
	d.diff(path, raw, nowJSON)
}

// stringMap diffs a map of strings key by key (annotations): adds and
// replaces, then removes, each in key order. It reports false, having done
// nothing, when raw is not such a map.
func (d *differ) stringMap(path string, raw json.RawMessage, now map[string]string) bool {
	var was map[string]string
	if json.Unmarshal(raw, &was) != nil {
		return false
	}
	keys := make([]string, 0, len(now))
	for k := range now {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		old, ok := was[k]
		switch {
		case !ok:
			d.ops = append(d.ops, jsonpatch.NewOperation("add", path+"/"+escape(k), now[k]))
		case old != now[k]:
			d.ops = append(d.ops, jsonpatch.NewOperation("replace", path+"/"+escape(k), now[k]))
		}
	}
	gone := make([]string, 0)
	for k := range was {
		if _, ok := now[k]; !ok {
			gone = append(gone, k)
		}
	}
	slices.Sort(gone)
	for _, k := range gone {
		d.ops = append(d.ops, jsonpatch.NewOperation("remove", path+"/"+escape(k), nil))
	}
	return true
}

// array diffs the array parent[key]. Elements are matched by name
// (container and volume names are unique in a valid pod): a new name is an
// insertion at its place, a matched element is diffed in place unless its
// typed encoding is unchanged. Without unique names, or when an element was
// removed or the order changed, elements are diffed index by index.
func (d *differ) array(parentPath string, parent map[string]json.RawMessage, key string, was, now any) {
	if d.err != nil {
		return
	}
	wasV, nowV := toSlice(was), toSlice(now)
	path := parentPath + "/" + escape(key)
	raw, had := parent[key]
	had = had && !bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
	if !had || len(nowV) == 0 {
		d.member(parentPath, parent, key, was, now, len(nowV) == 0)
		return
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		d.fail(fmt.Errorf("decode %s: %w", path, err))
		return
	}
	enc := make([][]byte, len(nowV))
	for j, v := range nowV {
		b, err := json.Marshal(v)
		if err != nil {
			d.fail(fmt.Errorf("encode %s/%d: %w", path, j, err))
			return
		}
		enc[j] = b
	}
	if match, ok := alignByName(wasV, nowV, len(elems)); ok {
		for j, i := range match {
			elem := fmt.Sprintf("%s/%d", path, j)
			if i < 0 {
				d.ops = append(d.ops, jsonpatch.NewOperation("add", elem, json.RawMessage(enc[j])))
				continue
			}
			wasJSON, err := json.Marshal(wasV[i])
			if err != nil {
				d.fail(fmt.Errorf("encode %s: %w", elem, err))
				return
			}
			if !bytes.Equal(wasJSON, enc[j]) {
				d.object(elem, elems[i], wasJSON, enc[j])
			}
		}
		return
	}
	n := min(len(elems), len(nowV))
	for i := len(elems) - 1; i >= n; i-- {
		d.ops = append(d.ops, jsonpatch.NewOperation("remove", fmt.Sprintf("%s/%d", path, i), nil))
	}
	for j := n; j < len(nowV); j++ {
		d.ops = append(d.ops, jsonpatch.NewOperation("add", fmt.Sprintf("%s/%d", path, j), json.RawMessage(enc[j])))
	}
	for i := range n {
		if i < len(wasV) && same(wasV[i], enc[i]) {
			continue
		}
		d.diff(fmt.Sprintf("%s/%d", path, i), elems[i], enc[i])
	}
}

// alignByName returns, for each element of now, the index of the element of
// was with the same name, or -1 for a new one. ok is false unless names are
// unique, every element of was is kept, in the same order, and was matches
// the raw array's length.
func alignByName(was, now []any, rawLen int) (match []int, ok bool) {
	if len(was) != rawLen {
		return nil, false
	}
	index := make(map[string]int, len(was))
	for i, v := range was {
		n := nameOf(v)
		if _, dup := index[n]; dup {
			return nil, false
		}
		index[n] = i
	}
	match = make([]int, len(now))
	seen, next := make(map[string]bool, len(now)), 0
	for j, v := range now {
		n := nameOf(v)
		if seen[n] {
			return nil, false
		}
		seen[n] = true
		i, found := index[n]
		switch {
		case !found:
			match[j] = -1
		case i != next:
			return nil, false
		default:
			match[j] = i
			next++
		}
	}
	return match, next == len(was)
}

func nameOf(v any) string {
	switch e := v.(type) {
	case *corev1.Container:
		return e.Name
	case *corev1.Volume:
		return e.Name
	}
	return ""
}

// object diffs the JSON object raw (the original) field by field: a field
// whose typed encoding is the same in wasJSON and nowJSON is skipped, a
// changed one is diffed with the library (or added when raw lacks it). Not
// an object in all three: the library diffs the whole.
func (d *differ) object(path string, raw, wasJSON, nowJSON []byte) {
	var rawM, wasM, nowM map[string]json.RawMessage
	if json.Unmarshal(raw, &rawM) != nil || json.Unmarshal(wasJSON, &wasM) != nil || json.Unmarshal(nowJSON, &nowM) != nil {
		d.diff(path, raw, nowJSON)
		return
	}
	keys := make([]string, 0, len(nowM))
	for k := range nowM {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if w, ok := wasM[k]; ok && bytes.Equal(w, nowM[k]) {
			continue
		}
		if r, ok := rawM[k]; ok {
			d.diff(path+"/"+escape(k), r, nowM[k])
		} else {
			d.ops = append(d.ops, jsonpatch.NewOperation("add", path+"/"+escape(k), nowM[k]))
		}
	}
	gone := make([]string, 0)
	for k := range rawM {
		if _, ok := nowM[k]; !ok {
			if _, typed := wasM[k]; typed {
				gone = append(gone, k)
			}
		}
	}
	slices.Sort(gone)
	for _, k := range gone {
		d.ops = append(d.ops, jsonpatch.NewOperation("remove", path+"/"+escape(k), nil))
	}
}

// add adds key to the parent object, or the parent itself when it is absent.
func (d *differ) add(parentPath string, parent map[string]json.RawMessage, key string, value []byte) {
	if parent == nil {
		obj, err := json.Marshal(map[string]json.RawMessage{key: value})
		if err != nil {
			d.fail(err)
			return
		}
		d.ops = append(d.ops, jsonpatch.NewOperation("add", parentPath, json.RawMessage(obj)))
		return
	}
	d.ops = append(d.ops, jsonpatch.NewOperation("add", parentPath+"/"+escape(key), json.RawMessage(value)))
}

// diff appends the library's patch from a to b, rooted at path.
func (d *differ) diff(path string, a, b []byte) {
	ops, err := jsonpatch.CreatePatch(a, b)
	if err != nil {
		d.fail(fmt.Errorf("diff %s: %w", path, err))
		return
	}
	for _, op := range ops {
		op.Path = path + op.Path
		d.ops = append(d.ops, op)
	}
}

// same reports whether was encodes to exactly now.
func same(was any, now []byte) bool {
	b, err := json.Marshal(was)
	return err == nil && bytes.Equal(b, now)
}

func toSlice(v any) []any {
	switch s := v.(type) {
	case []corev1.Container:
		out := make([]any, len(s))
		for i := range s {
			out[i] = &s[i]
		}
		return out
	case []corev1.Volume:
		out := make([]any, len(s))
		for i := range s {
			out[i] = &s[i]
		}
		return out
	}
	panic(fmt.Sprintf("mutate: no array diff for %T", v))
}

// encodePatch writes the operations as a JSON-patch document, byte for byte
// what json.Marshal(ops) gives, without re-compacting each operation's
// MarshalJSON output (a fifth of an admission's CPU time).
func encodePatch(ops []jsonpatch.Operation) ([]byte, error) {
	buf := make([]byte, 0, 8192)
	buf = append(buf, '[')
	for i, op := range ops {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, `{"op":`...)
		buf = appendString(buf, op.Operation)
		buf = append(buf, `,"path":`...)
		buf = appendString(buf, op.Path)
		if op.Value != nil || op.Operation == "add" || op.Operation == "replace" {
			v, err := json.Marshal(op.Value)
			if err != nil {
				return nil, fmt.Errorf("encode patch value at %s: %w", op.Path, err)
			}
			buf = append(buf, `,"value":`...)
			buf = append(buf, v...)
		}
		buf = append(buf, '}')
	}
	return append(buf, ']'), nil
}

func appendString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always encodes
	return append(buf, b...)
}
