package vault

import (
	"errors"
	"strings"
	"testing"
	"testing/iotest"
)

func TestReadBody(t *testing.T) {
	big := strings.Repeat("x", 10000)
	tests := []struct {
		name    string
		body    string
		size    int64
		max     int
		wantErr error
	}{
		{name: "known size", body: `{"a":1}`, size: 7, max: 100},
		{name: "unknown size grows", body: big, size: -1, max: 20000},
		{name: "declared too large", body: big, size: 10000, max: 100, wantErr: ErrBodyTooLarge},
		{name: "actual too large", body: big, size: -1, max: 9999, wantErr: ErrBodyTooLarge},
		{name: "exactly max", body: big, size: -1, max: 10000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadBody(iotest.HalfReader(strings.NewReader(tt.body)), tt.size, tt.max)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && string(got) != tt.body {
				t.Errorf("body mismatch (%d bytes, want %d)", len(got), len(tt.body))
			}
		})
	}
}
