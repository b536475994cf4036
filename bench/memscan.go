package main

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// memScan is what scanMemory found in one process.
type memScan struct {
	copies     int   // occurrences of any needle
	scanned    int64 // bytes read
	unreadable int64 // bytes in readable-looking mappings the kernel refused (e.g. memfd_secret)
}

// scanMemory counts the plaintext copies of the needles that root can read
// in pid's memory through /proc/PID/mem, the way DESIGN.md measures it:
// every readable mapping except the process's own executable (read-only
// program text cannot hold a secret fetched at run time; reading it would
// also fault 100s of MB into the target's RSS) and files under skipDirs
// (the delivered files' own mappings).
//
// Reading memory faults pages into the target, so measure RSS first.
func scanMemory(pid int, needles [][]byte, skipDirs []string) (memScan, error) {
	var res memScan
	exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	maps, err := os.Open(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return res, err
	}
	defer maps.Close()
	mem, err := os.Open(fmt.Sprintf("/proc/%d/mem", pid))
	if err != nil {
		return res, err
	}
	defer mem.Close()

	maxLen := 0
	for _, n := range needles {
		maxLen = max(maxLen, len(n))
	}
	if maxLen == 0 {
		return res, nil
	}
	buf := make([]byte, maxLen-1+1<<20)
	sc := bufio.NewScanner(maps)
	for sc.Scan() {
		m, ok := parseMapsLine(sc.Text())
		if !ok || !m.readable || skipMapping(m, exe, skipDirs) {
			continue
		}
		tail := 0 // bytes carried over from the previous chunk
		for off := m.start; off < m.end; {
			n := int(min(uint64(1<<20), m.end-off))
			got, err := mem.ReadAt(buf[tail:tail+n], int64(off))
			if got > 0 {
				res.scanned += int64(got)
				res.copies += countNeedles(buf[:tail+got], tail, needles)
				keep := min(maxLen-1, tail+got)
				copy(buf, buf[tail+got-keep:tail+got])
				tail = keep
			}
			if err != nil || got < n {
				res.unreadable += int64(m.end - off - uint64(got))
				break
			}
			off += uint64(n)
		}
	}
	return res, sc.Err()
}

// countNeedles counts matches in window that end past the first carried
// bytes (those were counted with the previous chunk).
func countNeedles(window []byte, carried int, needles [][]byte) int {
	count := 0
	for _, n := range needles {
		if len(n) == 0 {
			continue
		}
		from := max(0, carried-len(n)+1)
		for {
			i := bytes.Index(window[from:], n)
			if i < 0 {
				break
			}
			count++
			from += i + 1
		}
	}
	return count
}

type mapping struct {
	start, end uint64
	readable   bool
	writable   bool
	path       string
}

func parseMapsLine(line string) (mapping, bool) {
	f := strings.Fields(line)
	if len(f) < 5 {
		return mapping{}, false
	}
	lo, hi, ok := strings.Cut(f[0], "-")
	if !ok {
		return mapping{}, false
	}
	start, err1 := strconv.ParseUint(lo, 16, 64)
	end, err2 := strconv.ParseUint(hi, 16, 64)
	if err1 != nil || err2 != nil || end <= start {
		return mapping{}, false
	}
	m := mapping{start: start, end: end, readable: f[1][0] == 'r', writable: f[1][1] == 'w'}
	if len(f) >= 6 {
		m.path = strings.Join(f[5:], " ")
	}
	return m, true
}

func skipMapping(m mapping, exe string, skipDirs []string) bool {
	switch {
	case m.path == "[vvar]" || m.path == "[vsyscall]" || m.path == "[vvar_vclock]":
		return true
	case exe != "" && m.path == exe && !m.writable:
		return true
	}
	for _, d := range skipDirs {
		if d != "" && strings.HasPrefix(m.path, d) {
			return true
		}
	}
	return false
}
