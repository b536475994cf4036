package mutate

import (
	corev1 "k8s.io/api/core/v1"

	"github.com/credlet/credlet/internal/annotation"
	"github.com/credlet/credlet/internal/injectorconfig"
)

// Mutate returns a mutated deep copy of pod, or nil when there is nothing to
// do: the pod lacks the inject label, or it is already injected (a
// reinvocation, or a pod re-created from an injected one). The error wraps
// ErrDenied or annotation.ErrInvalid when the pod must be refused.
func Mutate(pod *corev1.Pod, namespace string, cfg *injectorconfig.Config) (*corev1.Pod, error) {
	plan, err := planFor(pod, namespace, cfg)
	if plan == nil || err != nil {
		return nil, err
	}
	out := pod.DeepCopy()
	plan.Apply(out)
	return out, nil
}

// planFor is Mutate's decision without the copy: the checked plan, or nil
// when there is nothing to do, or the reason to refuse the pod.
func planFor(pod *corev1.Pod, namespace string, cfg *injectorconfig.Config) (*Plan, error) {
	if pod.Labels[annotation.InjectLabel] != "true" {
		return nil, nil
	}
	if status, ok := pod.Annotations[annotation.KeyStatus]; ok {
		if status == annotation.StatusInjected && hasAgent(pod) {
			return nil, nil
		}
		return nil, deny("annotation %s=%q is written by the injector, but this pod has no %s container: remove the annotation", annotation.KeyStatus, status, AgentName)
	}
	plan, err := NewPlan(pod, namespace, cfg)
	if err != nil {
		return nil, err
	}
	if err := plan.checkTargets(pod); err != nil {
		return nil, err
	}
	return plan, nil
}

// Apply adds the agent, volumes, mounts, env and the status annotation to
// pod in place. NewPlan has checked that nothing clashes.
func (p *Plan) Apply(pod *corev1.Pod) {
	p.edits(pod).apply(pod)
}

func hasAgent(pod *corev1.Pod) bool {
	for _, c := range allContainers(pod) {
		if c.Name == AgentName {
			return true
		}
	}
	return false
}
