package filesource

import (
	"io"
	"log/slog"
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

func slogTo(w io.Writer) *slog.Logger { return slog.New(slog.NewJSONHandler(w, nil)) }
