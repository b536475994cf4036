package audit

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"
)

// Why a chain is broken; a *ChainError wraps one of these (errors.Is).
var (
	// ErrMalformed: the line is not an audit record (bad JSON, a missing or
	// unknown field, a bad value).
	ErrMalformed = errors.New("malformed record")
	// ErrTruncated: the last line is cut short (no newline, or bad JSON).
	ErrTruncated = errors.New("truncated record")
	// ErrEdited: the line's content does not match its hash, or it is not in
	// the canonical form the hash was computed over.
	ErrEdited = errors.New("edited record")
	// ErrSequence: the line does not follow the one before it (seq is not
	// the previous seq + 1, or prev is not the previous hash): a line was
	// removed, inserted or moved.
	ErrSequence = errors.New("record out of sequence")
	// ErrDuplicate: the line repeats the line before it.
	ErrDuplicate = errors.New("duplicated record")
)

// ChainError names the first line (1-based) where an audit file stops
// being an intact chain.
type ChainError struct {
	Line   int
	Reason string
	Err    error // ErrMalformed, ErrTruncated, ErrEdited, ErrSequence or ErrDuplicate
}

func (e *ChainError) Error() string {
	return fmt.Sprintf("audit chain broken at line %d: %s", e.Line, e.Reason)
}

func (e *ChainError) Unwrap() error { return e.Err }

// maxLine bounds one line; the logger's lines are far shorter.
const maxLine = 64 << 10

// Verify reads an audit trail and checks that every line is a canonical
// record whose hash matches its content, that seq counts up from 1 by one,
// and that each prev is the hash of the line before (the first line's prev
// is ""). It returns how many records it checked: all of them with a nil
// error, or those before the first bad line with a *ChainError naming it.
// Other errors are read errors. An empty input is an intact, empty chain.
//
// Verify cannot see lines cut from the end at a line boundary: compare the
// count or the last hash with a copy kept elsewhere.
func Verify(r io.Reader) (count int, err error) {
	br := bufio.NewReaderSize(r, maxLine)
	var prev parsed
	for n := 1; ; n++ {
		raw, err := br.ReadSlice('\n')
		switch {
		case errors.Is(err, io.EOF) && len(raw) == 0:
			return n - 1, nil
		case errors.Is(err, io.EOF):
			return n - 1, &ChainError{Line: n, Reason: "last line has no newline: the file was cut mid-record", Err: ErrTruncated}
		case errors.Is(err, bufio.ErrBufferFull):
			return n - 1, &ChainError{Line: n, Reason: fmt.Sprintf("line longer than %d bytes", maxLine), Err: ErrMalformed}
		case err != nil:
			return n - 1, fmt.Errorf("audit verify: read line %d: %w", n, err)
		}
		cur, cerr := checkLine(raw[:len(raw)-1])
		if cerr == nil {
			cerr = follows(cur, prev, n)
		}
		if cerr != nil {
			cerr.Line = n
			if errors.Is(cerr.Err, ErrMalformed) && lastLine(br) {
				cerr.Err = ErrTruncated
				cerr.Reason = "last line is cut short: " + cerr.Reason
			}
			return n - 1, cerr
		}
		prev = cur
	}
}

// lastLine reports whether the reader is at the end of its input.
func lastLine(br *bufio.Reader) bool {
	_, err := br.Peek(1)
	return errors.Is(err, io.EOF)
}

// parsed is what the chain check needs of one line.
type parsed struct {
	seq  uint64
	prev string
	hash string
}

// wire is a record as decoded; pointers tell absent from zero.
type wire struct {
	TS         *string `json:"ts"`
	Seq        *uint64 `json:"seq"`
	Event      *Event  `json:"event"`
	Credential *string `json:"credential"`
	Version    *int    `json:"version"`
	Peer       *struct {
		UID *uint32 `json:"uid"`
		GID *uint32 `json:"gid"`
		PID *int32  `json:"pid"`
	} `json:"peer"`
	Result *string `json:"result"`
	Count  *uint64 `json:"count"`
	Detail *string `json:"detail"`
	Prev   *string `json:"prev"`
	Hash   *string `json:"hash"`
}

// parseLine decodes one line (without its newline) into a record.
func parseLine(raw []byte) (*line, *ChainError) {
	bad := func(format string, a ...any) (*line, *ChainError) {
		return nil, &ChainError{Reason: fmt.Sprintf(format, a...), Err: ErrMalformed}
	}
	if len(raw) == 0 {
		return bad("empty line")
	}
	var w wire
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return bad("not a JSON audit record: %v", err)
	}
	switch {
	case w.TS == nil, w.Seq == nil, w.Event == nil, w.Result == nil, w.Prev == nil, w.Hash == nil:
		return bad(`missing one of the required fields "ts", "seq", "event", "result", "prev", "hash"`)
	case !w.Event.known():
		return bad("unknown event %q", *w.Event)
	case !isHash(*w.Hash):
		return bad(`"hash" is not 64 lower-case hex digits`)
	case *w.Prev != "" && !isHash(*w.Prev):
		return bad(`"prev" is neither empty nor 64 lower-case hex digits`)
	}
	ts, err := time.Parse(tsLayout, *w.TS)
	if err != nil {
		return bad(`"ts" is not a UTC timestamp like 2006-01-02T15:04:05.000000000Z`)
	}
	l := &line{TS: ts, Seq: *w.Seq, Event: *w.Event, Result: *w.Result, Prev: *w.Prev, Hash: *w.Hash}
	if w.Credential != nil {
		l.Credential = *w.Credential
	}
	if w.Version != nil {
		l.Version = *w.Version
	}
	if w.Count != nil {
		l.Count = *w.Count
	}
	if w.Detail != nil {
		l.Detail = *w.Detail
	}
	if p := w.Peer; p != nil {
		if p.UID == nil || p.GID == nil || p.PID == nil {
			return bad(`"peer" needs "uid", "gid" and "pid"`)
		}
		l.Peer = &Peer{UID: *p.UID, GID: *p.GID, PID: *p.PID}
	}
	return l, nil
}

// checkLine parses one line and checks it against its own hash.
func checkLine(raw []byte) (parsed, *ChainError) {
	l, cerr := parseLine(raw)
	if cerr != nil {
		return parsed{}, cerr
	}
	canon := appendCanonical(nil, l)
	want := append(canon[:len(canon)-1:len(canon)-1], `,"hash":"`...)
	want = append(want, l.Hash...)
	want = append(want, `"}`...)
	if !bytes.Equal(raw, want) {
		return parsed{}, &ChainError{Reason: "not in canonical form (field order, spacing, escaping or a zero-valued optional field changed)", Err: ErrEdited}
	}
	sum := sha256.Sum256(canon)
	if hex.EncodeToString(sum[:]) != l.Hash {
		return parsed{}, &ChainError{Reason: "content does not match its hash: the line was edited", Err: ErrEdited}
	}
	return parsed{seq: l.Seq, prev: l.Prev, hash: l.Hash}, nil
}

// follows checks that cur continues the chain after prev (line n-1).
func follows(cur, prev parsed, n int) *ChainError {
	if n == 1 {
		if cur.seq != 1 || cur.prev != "" {
			return &ChainError{Reason: fmt.Sprintf(`first record has seq %d and prev %q, want seq 1 and an empty prev: the start of the file was removed`, cur.seq, cur.prev), Err: ErrSequence}
		}
		return nil
	}
	switch {
	case cur.hash == prev.hash:
		return &ChainError{Reason: fmt.Sprintf("repeats line %d", n-1), Err: ErrDuplicate}
	case cur.seq <= prev.seq:
		return &ChainError{Reason: fmt.Sprintf("seq %d after seq %d: a line was repeated or moved", cur.seq, prev.seq), Err: ErrSequence}
	case cur.seq > prev.seq+1:
		return &ChainError{Reason: fmt.Sprintf("seq %d after seq %d: %d records missing (removed) or lines moved", cur.seq, prev.seq, cur.seq-prev.seq-1), Err: ErrSequence}
	case cur.prev != prev.hash:
		return &ChainError{Reason: fmt.Sprintf("prev is not the hash of line %d: a line was replaced or inserted", n-1), Err: ErrSequence}
	}
	return nil
}

func isHash(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
