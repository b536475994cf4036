package mutate

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"

	corev1 "k8s.io/api/core/v1"

	"github.com/credlet/credlet/internal/annotation"
)

// patch writes e as a JSON patch (RFC 6902) against the pod as the apiserver
// sent it; pod is that object decoded. Every operation is an "add": an
// element inserted at index 0 or appended at the array's length, a missing
// array or annotations map added whole, a member set. Paths name only
// fixed keys and indices, so the raw pod's other bytes are never decoded
// or re-encoded. specInRaw is false when the raw pod has no spec object
// (or a null one): the new spec is then added whole.
//
// The operations follow pod's typed view of the raw object: an array that
// is absent or null decodes to a nil slice, one that is present to a
// non-nil one of the same length, so indices computed here are indices in
// the raw object. TestPatchMatchesReference holds this against a diff of
// the original and mutated pods.
func (e *edits) patch(pod *corev1.Pod, specInRaw bool) ([]byte, error) {
	w := newPatchWriter()
	defer w.release()
	if pod.Annotations == nil {
		w.add("/metadata/annotations", map[string]string{annotation.KeyStatus: annotation.StatusInjected})
	} else {
		w.add(statusPath, annotation.StatusInjected)
	}
	if !specInRaw {
		spec := corev1.Pod{Spec: *pod.Spec.DeepCopy()}
		e.apply(&spec)
		w.add("/spec", &spec.Spec)
		return w.bytes()
	}
	shift := 0 // how far the insertion moved the pod's init containers
	if e.initFront != nil {
		if pod.Spec.InitContainers == nil {
			w.add("/spec/initContainers", []*corev1.Container{e.initFront})
		} else {
			w.add("/spec/initContainers/0", e.initFront)
		}
		shift = 1
	}
	if e.appended != nil {
		extend(w, "/spec/containers", pod.Spec.Containers, []corev1.Container{*e.appended})
	}
	for _, t := range e.targets {
		list, path, i := pod.Spec.Containers, "/spec/containers/", t.index
		if t.init {
			list, path, i = pod.Spec.InitContainers, "/spec/initContainers/", t.index+shift
		}
		path += strconv.Itoa(i)
		extend(w, path+"/volumeMounts", list[t.index].VolumeMounts, t.mounts)
		extend(w, path+"/env", list[t.index].Env, t.env)
	}
	extend(w, "/spec/volumes", pod.Spec.Volumes, e.volumes)
	if e.serviceAccount != "" {
		w.add("/spec/serviceAccountName", e.serviceAccount)
	}
	return w.bytes()
}

// statusPath is the JSON pointer of the status annotation.
var statusPath = "/metadata/annotations/" + escape(annotation.KeyStatus)

// extend appends add to the array at path, which holds have: one add per
// element at the array's end, or the whole array when have is nil (the
// member is absent or null).
func extend[T any](w *patchWriter, path string, have, add []T) {
	switch {
	case len(add) == 0:
	case have == nil:
		w.add(path, add)
	default:
		for i := range add {
			w.add(path+"/"+strconv.Itoa(len(have)+i), &add[i])
		}
	}
}

// patchWriter encodes add operations into one JSON array, each value
// straight into a pooled buffer.
type patchWriter struct {
	buf *bytes.Buffer
	enc *json.Encoder
	n   int
	err error
}

var patchBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledPatch: a buffer grown by an unusually large patch is dropped
// rather than kept.
const maxPooledPatch = 64 << 10

func newPatchWriter() *patchWriter {
	b := patchBuffers.Get().(*bytes.Buffer)
	b.Reset()
	b.WriteByte('[')
	return &patchWriter{buf: b, enc: json.NewEncoder(b)}
}

// add appends {"op":"add","path":path,"value":value}. path is made of this
// package's constant keys, escaped tokens and decimal indices: it needs no
// JSON escaping.
func (w *patchWriter) add(path string, value any) {
	if w.err != nil {
		return
	}
	if w.n > 0 {
		w.buf.WriteByte(',')
	}
	w.n++
	w.buf.WriteString(`{"op":"add","path":"`)
	w.buf.WriteString(path)
	w.buf.WriteString(`","value":`)
	if err := w.enc.Encode(value); err != nil {
		w.err = fmt.Errorf("encode patch value at %s: %w", path, err)
		return
	}
	w.buf.Truncate(w.buf.Len() - 1) // Encode's newline
	w.buf.WriteByte('}')
}

// bytes returns a copy of the finished patch.
func (w *patchWriter) bytes() ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	w.buf.WriteByte(']')
	return bytes.Clone(w.buf.Bytes()), nil
}

func (w *patchWriter) release() {
	if w.buf.Cap() <= maxPooledPatch {
		patchBuffers.Put(w.buf)
	}
	w.buf = nil
}

// escape escapes a JSON-pointer reference token (RFC 6901).
func escape(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '~':
			b = append(b, "~0"...)
		case '/':
			b = append(b, "~1"...)
		default:
			b = append(b, s[i])
		}
	}
	return string(b)
}
