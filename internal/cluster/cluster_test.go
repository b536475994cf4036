package cluster

import (
	"context"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/credlet/credlet/internal/testenv"
)

func TestMain(m *testing.M) {
	if err := Isolate(); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// TestDataPlane starts the cluster without Vault and runs one pod of the
// pause image to Running.
func TestDataPlane(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	if _, err := findBinaries(); err != nil {
		if testenv.InCI() {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	root, err := ModuleRoot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	archive, err := BuildImages(ctx, root, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c, err := Start(ctx, Options{Archives: []string{archive}, Log: os.Stderr, noVault: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	cs := c.Kube.Clientset
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "default"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: PodCheckImage}}},
	}
	if _, err := cs.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	err = waitFor(ctx, "pod Running", time.Second, func(ctx context.Context) (bool, error) {
		p, err := cs.CoreV1().Pods("default").Get(ctx, "p", metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		t.Logf("%s", c.PodProblems(ctx, "default"))
		return p.Status.Phase == corev1.PodRunning, nil
	}, c.kubelet)
	if err != nil {
		t.Fatalf("%v\nkubelet log:\n%s", err, tail(c.Logs("kubelet"), 4000))
	}
}
