package credspec

import (
	"errors"
	"syscall"
	"testing"
)

func TestParseHooks(t *testing.T) {
	n, err := ParseNotify("signal:SIGHUP:a-very-long-process-name")
	if err != nil || n.Signal != syscall.SIGHUP || n.Process != "a-very-long-pro" {
		t.Fatalf("ParseNotify signal = %+v, %v", n, err)
	}
	if n, err := ParseNotify("http:http://127.0.0.1:8080/reload"); err != nil || n.URL != "http://127.0.0.1:8080/reload" {
		t.Fatalf("ParseNotify http = %+v, %v", n, err)
	}
	for _, bad := range []string{"", "signal:KILL:x", "signal:HUP:", "signal:HUP:a/b", "http:ftp://x", "exec:x"} {
		if _, err := ParseNotify(bad); !errors.Is(err, ErrNotify) || ProblemOf(err) == err.Error() {
			t.Errorf("ParseNotify(%q) = %v, want a Problem of kind ErrNotify", bad, err)
		}
	}

	if v, err := ParseVerifyURL("unix:/run/verify.sock"); err != nil || v.UnixPath != "/run/verify.sock" {
		t.Fatalf("ParseVerifyURL unix = %+v, %v", v, err)
	}
	if v, err := ParseVerifyURL("http://[::1]:9/v"); err != nil || v.URL != "http://[::1]:9/v" {
		t.Fatalf("ParseVerifyURL loopback = %+v, %v", v, err)
	}
	_, err = ParseVerifyURL("http://10.0.0.1/verify")
	if !errors.Is(err, ErrVerifyURL) || !errors.Is(err, ErrNotLoopback) {
		t.Fatalf("non-loopback: %v, want ErrVerifyURL and ErrNotLoopback", err)
	}
	_, err = ParseVerifyURL("https://127.0.0.1/verify")
	if !errors.Is(err, ErrVerifyURL) || errors.Is(err, ErrNotLoopback) {
		t.Fatalf("https: %v, want ErrVerifyURL only", err)
	}
}
