package reliability

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/credlet/credlet/internal/testenv"
)

// TestReadyMeansDelivered starts the agent several times and checks, at
// the first moment /readyz answers 200, that every set can be read both
// from the socket and from its files. Readiness gates the app's start (the
// injected sidecar's startup probe), so an app started at that moment,
// legacy file readers included, must find its credentials.
func TestReadyMeansDelivered(t *testing.T) {
	testenv.NeedServers(t)
	path := uniquePath("ready")
	putVersion(t, path, 1, outageFields)
	sets := []string{"plain", "asjson"}
	creds := []string{"plain=secret/" + path, "asjson=secret/" + path + ";format=json"}
	for run := range 3 {
		a := startAgent(t, agentOpts{creds: creds})
		c := &http.Client{Timeout: time.Second}
		if !eventually(30*time.Second, func() bool {
			resp, err := c.Get("http://" + a.listen + "/readyz")
			if err != nil {
				return false
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			return resp.StatusCode == 200
		}) {
			t.Fatalf("run %d: never ready\n%s", run, a.logTail())
		}
		sc := socketClient(a.socket)
		for _, set := range sets {
			if _, err := getCredential(sc, set); err != nil {
				t.Errorf("run %d: /readyz is 200 but set %s is not on the socket: %v", run, set, err)
			}
			if _, err := os.Stat(filepath.Join(a.secrets, set, "..data")); err != nil {
				t.Errorf("run %d: /readyz is 200 but set %s is not written as files yet: %v", run, set, err)
			}
		}
		_ = a.signal(syscall.SIGTERM, 10*time.Second)
	}
}
