//go:build race

package socketapi

const raceEnabled = true
