package verify_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/credlet/credlet/internal/verify"
)

// The app serves a hook that tries the candidate key against its broker;
// the agent's source calls Verify before it commits a new version.
func Example() {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent) // the candidate works
	}))
	defer hook.Close()

	v, err := verify.New(hook.URL+"/credlet/verify", verify.Options{})
	if err != nil {
		panic(err)
	}
	err = v.Verify(context.Background(), "zerodha", 4, map[string][]byte{"api_key": []byte("FAKE-api-key-123")})
	fmt.Println(err)

	_, err = verify.New("http://broker.example.com/verify", verify.Options{})
	fmt.Println(err != nil)
	// Output:
	// <nil>
	// true
}
