package store_test

import (
	"context"
	"fmt"
	"time"

	"github.com/credlet/credlet/internal/store"
)

// A source commits versions; readers acquire immutable snapshots and release
// them; a long-poll waits for the next version.
func Example() {
	st, err := store.New([]store.Declared{{Name: "zerodha"}})
	if err != nil {
		panic(err)
	}
	defer st.Close()

	// The source: Commit copies into locked memory and wipes these slices.
	_ = st.Commit("zerodha", store.Meta{Version: 1, FetchedAt: time.Now()},
		map[string][]byte{"api_key": []byte("FAKE-api-key-123")})

	set, err := st.Acquire("zerodha")
	if err != nil {
		panic(err)
	}
	key, _ := set.Field("api_key") // a view, valid until Release
	fmt.Println(set.Version(), len(key), set)
	set.Release()

	go func() {
		_ = st.Commit("zerodha", store.Meta{Version: 2, FetchedAt: time.Now()},
			map[string][]byte{"api_key": []byte("FAKE-api-key-456")})
	}()
	next, err := st.Wait(context.Background(), "zerodha", 1)
	if err != nil {
		panic(err)
	}
	defer next.Release()
	fmt.Println(next.Version(), next.Fields())
	// Output:
	// 1 16 credential set zerodha [REDACTED]
	// 2 [api_key]
}
