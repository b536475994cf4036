package filesource

import (
	"testing"

	"github.com/credlet/credlet/internal/securemem"
)

func mustBuf(t *testing.T, b []byte) *securemem.Buffer {
	t.Helper()
	buf, err := securemem.New(len(b))
	if err != nil {
		t.Fatal(err)
	}
	copy(buf.Bytes(), b)
	t.Cleanup(buf.Free)
	return buf
}
