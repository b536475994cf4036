package mutate

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/credlet/credlet/internal/annotation"
)

// identity decides whom the agent runs as: the target containers' user
// (container securityContext, else the pod's), or the credlet.io/uid and
// credlet.io/gid annotations. The agent serves only that user, so an
// unknown user denies the pod rather than opening the credentials to all.
func identity(pod *corev1.Pod, targets []Target, annUID, annGID *int64) (uid int64, gid *int64, err error) {
	uids := map[int64][]string{}
	gids := map[int64][]string{}
	var noUID, noGID []string
	for _, t := range targets {
		c := (&Plan{}).container(pod, t)
		u, g := effectiveIDs(pod, c)
		if u == nil {
			noUID = append(noUID, t.Name)
		} else {
			uids[*u] = append(uids[*u], t.Name)
		}
		if g == nil {
			noGID = append(noGID, t.Name)
		} else {
			gids[*g] = append(gids[*g], t.Name)
		}
	}
	uidKey, gidKey := annotation.Prefix+"uid", annotation.Prefix+"gid"
	switch {
	case annUID != nil:
		for u, names := range uids {
			if u != *annUID {
				return 0, nil, deny("annotation %s=%d, but container %s runs as user %d: the agent would serve a user the app is not", uidKey, *annUID, quoteList(names), u)
			}
		}
		uid = *annUID
	case len(noUID) > 0:
		return 0, nil, deny("container %s has no securityContext.runAsUser (nor has the pod), so the injector cannot tell which user may read the credentials: set runAsUser or annotation %s", quoteList(noUID), uidKey)
	case len(uids) > 1:
		return 0, nil, deny("the containers run as different users (%s): credlet serves one user; set annotation %scontainers to the ones that need credentials", describeIDs(uids), annotation.Prefix)
	default:
		for u := range uids {
			uid = u
		}
	}
	if uid == 0 {
		return 0, nil, deny("container %s runs as root (runAsUser 0); the agent runs as the app's user and never as root: run the app as a non-root user", quoteList(uids[0]))
	}
	switch {
	case annGID != nil:
		for g, names := range gids {
			if g != *annGID {
				return 0, nil, deny("annotation %s=%d, but container %s runs as group %d", gidKey, *annGID, quoteList(names), g)
			}
		}
		gid = annGID
	case len(noGID) == 0 && len(gids) == 1:
		for g := range gids {
			gid = &g
		}
	}
	return uid, gid, nil
}

func effectiveIDs(pod *corev1.Pod, c *corev1.Container) (uid, gid *int64) {
	if psc := pod.Spec.SecurityContext; psc != nil {
		uid, gid = psc.RunAsUser, psc.RunAsGroup
	}
	if sc := c.SecurityContext; sc != nil {
		if sc.RunAsUser != nil {
			uid = sc.RunAsUser
		}
		if sc.RunAsGroup != nil {
			gid = sc.RunAsGroup
		}
	}
	return uid, gid
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func describeIDs(ids map[int64][]string) string {
	var parts []string
	for _, id := range slices.Sorted(maps.Keys(ids)) {
		parts = append(parts, fmt.Sprintf("%s as %d", quoteList(ids[id]), id))
	}
	return strings.Join(parts, "; ")
}
