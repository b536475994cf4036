package mutate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	jsonpatch "github.com/evanphx/json-patch/v5"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"
	kjson "sigs.k8s.io/json"

	"github.com/credlet/credlet/internal/annotation"
	"github.com/credlet/credlet/internal/injectorconfig"
)

// Handler is the admission.Handler for pods. It never returns an error: a
// pod is patched, allowed unchanged, denied (a message for its author) or
// errored (the injector's fault).
type Handler struct {
	Config *injectorconfig.Config
	Log    *slog.Logger
}

// Handle answers one AdmissionRequest.
func (h *Handler) Handle(_ context.Context, req admission.Request) admission.Response {
	if req.Kind.Kind != "Pod" || req.Resource.Resource != "pods" || req.SubResource != "" || req.Operation != admissionv1.Create {
		return admission.Allowed("not a pod creation")
	}
	if len(req.Object.Raw) == 0 {
		return admission.Errored(http.StatusBadRequest, errors.New("admission request carries no object"))
	}
	var pod corev1.Pod
	unknown, err := kjson.UnmarshalStrict(req.Object.Raw, &pod, kjson.DisallowUnknownFields)
	if err != nil {
		return admission.Errored(http.StatusBadRequest, fmt.Errorf("decode pod: %w", err))
	}
	log := h.Log.With("namespace", req.Namespace, "pod", podName(&pod), "request_uid", string(req.UID))
	mutated, err := Mutate(&pod, req.Namespace, h.Config)
	switch {
	case errors.Is(err, ErrDenied) || errors.Is(err, annotation.ErrInvalid):
		log.Info("pod denied", "reason", err.Error())
		return admission.Denied(err.Error())
	case err != nil:
		log.Error("pod not mutated", "error", err)
		return admission.Errored(http.StatusInternalServerError, err)
	case mutated == nil:
		return admission.Allowed("nothing to inject")
	}
	resp, err := patch(req.Object.Raw, &pod, mutated, len(unknown) > 0)
	if err != nil {
		log.Error("pod not mutated", "error", err, "unknown_fields", fmt.Sprint(unknown))
		return admission.Errored(http.StatusInternalServerError, err)
	}
	log.Info("pod injected", "patch_ops", len(resp.Patches))
	return resp
}

// patch diffs the original and mutated pods. Normally the original is the
// raw object, so every path exists in what the apiserver patches. When the
// pod carries fields these Go types don't know (a newer apiserver), a diff
// against the raw object would remove them; the diff is then taken from the
// typed round trip, and must apply to the raw object cleanly.
func patch(raw []byte, pod, mutated *corev1.Pod, hasUnknown bool) (admission.Response, error) {
	current, err := json.Marshal(mutated)
	if err != nil {
		return admission.Response{}, fmt.Errorf("encode mutated pod: %w", err)
	}
	if !hasUnknown {
		return checkPatch(admission.PatchResponseFromRaw(raw, current))
	}
	original, err := json.Marshal(pod)
	if err != nil {
		return admission.Response{}, fmt.Errorf("encode pod: %w", err)
	}
	resp, err := checkPatch(admission.PatchResponseFromRaw(original, current))
	if err != nil {
		return resp, err
	}
	ops, err := json.Marshal(resp.Patches)
	if err != nil {
		return admission.Response{}, fmt.Errorf("encode patch: %w", err)
	}
	p, err := jsonpatch.DecodePatch(ops)
	if err == nil {
		_, err = p.Apply(raw)
	}
	if err != nil {
		return admission.Response{}, fmt.Errorf("the pod has fields this injector's API version does not know, and the patch would not keep them (upgrade credlet-injector): %w", err)
	}
	return resp, nil
}

func checkPatch(resp admission.Response) (admission.Response, error) {
	if !resp.Allowed {
		return resp, fmt.Errorf("diff pods: %s", resp.Result.Message)
	}
	return resp, nil
}

func podName(pod *corev1.Pod) string {
	if pod.Name != "" {
		return pod.Name
	}
	return pod.GenerateName + "*"
}
