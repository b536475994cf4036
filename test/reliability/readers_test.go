package reliability

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// errTorn marks a read whose fields belong to different versions.
var errTorn = errors.New("torn read")

// readFunc reads a credential set once and returns its version.
type readFunc func() (int, error)

func socketReader(c *http.Client, name string, fields []string) readFunc {
	return func() (int, error) {
		cr, err := getCredential(c, name)
		if err != nil {
			return 0, err
		}
		if err := consistent(cr.Fields, fields, cr.Version); err != nil {
			return 0, fmt.Errorf("%w: socket %s: %v", errTorn, name, err)
		}
		return cr.Version, nil
	}
}

func fileReader(setDir string, fields []string) readFunc {
	return func() (int, error) {
		v, f, err := readFileSet(setDir, fields)
		if err != nil {
			return 0, err
		}
		if err := consistent(f, fields, v); err != nil {
			return 0, fmt.Errorf("%w: files in %s: %v", errTorn, setDir, err)
		}
		return v, nil
	}
}

func jsonReader(setDir string, fields []string) readFunc {
	return func() (int, error) {
		v, f, err := readJSONFile(setDir, fields)
		if err != nil {
			return 0, err
		}
		if err := consistent(f, fields, v); err != nil {
			return 0, fmt.Errorf("%w: %s/credentials.json: %v", errTorn, setDir, err)
		}
		return v, nil
	}
}

// readerStat is what one reader saw.
type readerStat struct {
	name      string
	reads     int
	errs      int
	torn      int
	backwards int
	firstErrs []string
	errTimes  []time.Time
	last      int
	versions  map[int]bool
	lastOK    time.Time
}

// readerGroup runs readers continuously (a 1 ms pause between reads keeps
// 8 readers from starving the agent on a 2-core machine) until stop.
type readerGroup struct {
	mu    sync.Mutex
	stats []*readerStat
	quit  chan struct{}
	wg    sync.WaitGroup
	once  sync.Once
}

func newReaders(t *testing.T) *readerGroup {
	g := &readerGroup{quit: make(chan struct{})}
	t.Cleanup(g.stop)
	return g
}

func (g *readerGroup) add(name string, read readFunc) {
	st := &readerStat{name: name, versions: map[int]bool{}}
	g.mu.Lock()
	g.stats = append(g.stats, st)
	g.mu.Unlock()
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		for {
			select {
			case <-g.quit:
				return
			default:
			}
			v, err := read()
			now := time.Now()
			g.mu.Lock()
			st.reads++
			switch {
			case errors.Is(err, errTorn):
				st.torn++
				st.errs++
			case err != nil:
				st.errs++
			default:
				if v < st.last {
					st.backwards++
					err = fmt.Errorf("version went backwards: %d after %d", v, st.last)
				}
				st.last = v
				st.versions[v] = true
				st.lastOK = now
			}
			if err != nil {
				st.errTimes = append(st.errTimes, now)
				if len(st.firstErrs) < 3 {
					st.firstErrs = append(st.firstErrs, now.Format("15:04:05.000")+" "+err.Error())
				}
			}
			g.mu.Unlock()
			time.Sleep(time.Millisecond)
		}
	}()
}

func (g *readerGroup) stop() {
	g.once.Do(func() { close(g.quit) })
	g.wg.Wait()
}

// snapshot copies the stats (safe while readers run).
func (g *readerGroup) snapshot() []readerStat {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]readerStat, len(g.stats))
	for i, s := range g.stats {
		out[i] = *s
		out[i].versions = map[int]bool{}
		for v := range s.versions {
			out[i].versions[v] = true
		}
		out[i].errTimes = append([]time.Time(nil), s.errTimes...)
	}
	return out
}

// requireClean fails the test unless every reader read successfully at
// least once and saw no error, torn read or backwards version. allowed, if
// set, excuses errors (not torn or backwards reads) at the times it accepts.
func (g *readerGroup) requireClean(t *testing.T, allowed func(time.Time) bool) {
	t.Helper()
	for _, s := range g.snapshot() {
		errs := 0
		for _, at := range s.errTimes {
			if allowed == nil || !allowed(at) {
				errs++
			}
		}
		if s.torn > 0 || s.backwards > 0 {
			errs = max(errs, s.torn+s.backwards)
		}
		if errs > 0 || len(s.versions) == 0 {
			lastErr := ""
			if n := len(s.errTimes); n > 0 {
				lastErr = s.errTimes[n-1].Format("15:04:05.000")
			}
			t.Errorf("reader %s: %d reads, %d errors (%d not excused, last at %s), %d torn, %d backwards, %d versions seen; first: %v",
				s.name, s.reads, s.errs, errs, lastErr, s.torn, s.backwards, len(s.versions), s.firstErrs)
		}
	}
}

// totals sums reads and distinct versions over every reader whose name
// ends with suffix ("" for all).
func (g *readerGroup) totals(suffix string) (reads int, versions map[int]bool) {
	versions = map[int]bool{}
	for _, s := range g.snapshot() {
		if !strings.HasSuffix(s.name, suffix) {
			continue
		}
		reads += s.reads
		for v := range s.versions {
			versions[v] = true
		}
	}
	return reads, versions
}
