package notify_test

import (
	"fmt"

	"github.com/credlet/credlet/internal/notify"
)

// The agent parses --notify once; Run then announces each rotation.
func Example() {
	for _, spec := range []string{"signal:SIGHUP:trading-bot", "http:http://127.0.0.1:8080/credlet/rotated", "exec:/bin/reload"} {
		n, err := notify.Parse(spec, notify.Options{})
		fmt.Println(n != nil, err != nil)
	}
	// Output:
	// true false
	// true false
	// false true
}
