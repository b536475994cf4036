//go:build race

package mutate

const raceEnabled = true
