package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/credlet/credlet/internal/audit"
)

// The agent opens the audit file, runs the logger beside its other parts,
// logs events as they happen and reports every socket read.
func Example() {
	dir, _ := os.MkdirTemp("", "audit")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "audit.log")

	w, err := audit.Open(path)
	if err != nil {
		fmt.Println(err)
		return
	}
	log := audit.New(w)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- log.Run(ctx) }()

	log.Log(audit.Record{Event: audit.Login, Result: "ok", Detail: "method=kubernetes"})
	log.Log(audit.Record{Event: audit.Commit, Credential: "zerodha", Version: 7, Result: "ok"})
	bot := audit.Peer{UID: 1000, GID: 1000, PID: 4242}
	for range 1000 {
		log.ObserveRead(bot, "zerodha", 7) // the first is recorded, the rest summarised
	}

	stop()
	<-done // on shutdown the read summary is written and the file synced
	_ = w.Close()

	f, _ := os.Open(path)
	defer f.Close()
	n, err := audit.Verify(f)
	fmt.Println(n, "records, error:", err)
	// Output: 4 records, error: <nil>
}
