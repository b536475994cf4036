package cluster

import (
	"slices"
	"testing"
)

func TestWithEnv(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		set  []string
		want []string
	}{
		{"adds", []string{"A=1"}, []string{"B=2"}, []string{"A=1", "B=2"}},
		{"replaces, never duplicates", []string{envStage + "=init", "A=1"}, []string{envStage + "=main"}, []string{"A=1", envStage + "=main"}},
		{"prefix of a key is another key", []string{"AB=1"}, []string{"A=2"}, []string{"AB=1", "A=2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := withEnv(tt.env, tt.set...); !slices.Equal(got, tt.want) {
				t.Errorf("withEnv(%q, %q) = %q, want %q", tt.env, tt.set, got, tt.want)
			}
		})
	}
}
