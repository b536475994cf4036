package oneline

import "testing"

func TestClip(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{"short stays", "abc", 10, "abc"},
		{"exact stays", "abcdefghij", 10, "abcdefghij"},
		{"long is cut", "abcdefghijk", 10, "abcdefg..."},
		{"never inside a rune", "aaaaaa€€€€", 10, "aaaaaa..."},
		{"tiny n", "abcdefgh", 1, "a..."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Clip(tt.in, tt.n); got != tt.want {
				t.Errorf("Clip(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}

func TestOf(t *testing.T) {
	if got := Of("a\n\tb   c\r\nd", 100); got != "a b c d" {
		t.Errorf("Of = %q", got)
	}
	if got := Of("one two three four", 10); got != "one two..." {
		t.Errorf("Of clipped = %q", got)
	}
}
