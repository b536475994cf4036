package oneline

import (
	"strings"
	"unicode/utf8"
)

// Clip returns s cut to at most n bytes, ending in "..." when cut, never in
// the middle of a UTF-8 sequence. n below 4 is taken as 4.
func Clip(s string, n int) string {
	n = max(n, 4)
	if len(s) <= n {
		return s
	}
	cut := n - 3
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "..."
}

// Fold joins s's words with single spaces: newlines and runs of white space
// become one space.
func Fold(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// Of folds s into one line and clips it to n bytes.
func Of(s string, n int) string { return Clip(Fold(s), n) }
