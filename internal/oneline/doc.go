// Package oneline is the one place outside text is made safe to put in a
// one-line message: folded white space, a byte bound, no split rune.
package oneline
