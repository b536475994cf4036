package mutate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"

	jsonpatchapply "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"

	"github.com/credlet/credlet/internal/annotation"
	"github.com/credlet/credlet/internal/injectorconfig"
)

// Handler answers admission requests for pods. It never returns an error:
// a pod is patched, allowed unchanged, denied (a message for its author) or
// errored (the injector's fault).
type Handler struct {
	Config *injectorconfig.Config
	Log    *slog.Logger
	// Cache, when not nil, serves the patch of a pod seen before.
	Cache *PatchCache
}

// Admit answers one AdmissionRequest.
func (h *Handler) Admit(_ context.Context, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	if req.Kind.Kind != "Pod" || req.Resource.Resource != "pods" || req.SubResource != "" || req.Operation != admissionv1.Create {
		return allowed("not a pod creation")
	}
	if len(req.Object.Raw) == 0 {
		return Errored(http.StatusBadRequest, errors.New("admission request carries no object"))
	}
	var key [32]byte
	if h.Cache != nil {
		key = cacheKey(req.Namespace, req.Object.Raw)
		if p, ok := h.Cache.get(key); ok {
			return patched(p)
		}
	}
	var pod corev1.Pod
	unknown, err := kjson.UnmarshalStrict(req.Object.Raw, &pod, kjson.DisallowUnknownFields)
	if err != nil {
		return Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	plan, err := planFor(&pod, req.Namespace, h.Config)
	switch {
	case errors.Is(err, ErrDenied) || errors.Is(err, annotation.ErrInvalid):
		h.Log.Info("pod denied", "namespace", req.Namespace, "pod", podName(&pod), "request_uid", string(req.UID), "reason", err.Error())
		return denied(err.Error())
	case err != nil:
		h.Log.Error("pod not mutated", "namespace", req.Namespace, "pod", podName(&pod), "request_uid", string(req.UID), "error", err)
		return Errored(http.StatusInternalServerError, err)
	case plan == nil:
		return allowed("nothing to inject")
	}
	p, err := patch(req.Object.Raw, &pod, plan.edits(&pod), len(unknown) > 0)
	if err != nil {
		h.Log.Error("pod not mutated", "namespace", req.Namespace, "pod", podName(&pod), "request_uid", string(req.UID),
			"error", err, "unknown_fields", fmt.Sprint(unknown))
		return Errored(http.StatusInternalServerError, err)
	}
	h.Log.Debug("pod injected", "namespace", req.Namespace, "pod", podName(&pod), "request_uid", string(req.UID))
	h.Cache.put(key, p)
	return patched(p)
}

// patch writes the edits as a JSON patch against raw, the pod as the
// apiserver sent it, which pod is decoded from (see edits.patch). The raw
// pod is read again only when its typed spec is empty, to tell an absent
// spec from an empty one. When decoding reported fields these Go types
// don't know, or a key given twice, the patch is applied to raw before it
// is answered, so a pod it would not fit is refused here rather than by
// the apiserver.
func patch(raw []byte, pod *corev1.Pod, e *edits, strictErrs bool) ([]byte, error) {
	specInRaw := true
	if reflect.ValueOf(&pod.Spec).Elem().IsZero() {
		var top struct {
			Spec json.RawMessage `json:"spec"`
		}
		if err := json.Unmarshal(raw, &top); err != nil {
			return nil, fmt.Errorf("decode pod: %w", err)
		}
		specInRaw = len(top.Spec) > 0 && !bytes.Equal(top.Spec, []byte("null"))
	}
	out, err := e.patch(pod, specInRaw)
	if err != nil || !strictErrs {
		return out, err
	}
	p, err := jsonpatchapply.DecodePatch(out)
	if err == nil {
		_, err = p.Apply(raw)
	}
	if err != nil {
		return nil, fmt.Errorf("the pod has fields this injector's API version does not know, and the patch would not apply to it (upgrade credlet-injector): %w", err)
	}
	return out, nil
}

func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
