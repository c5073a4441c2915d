package load

import (
	"bytes"
	"io"
)

// answer reads the answer to one HTTP request as its bytes come in, for
// the event loop, which cannot wait in a read: it is handed what each read
// got and says whether the answer is whole, needs more, or is not simple
// (see readResponse) and must go to readResponse. It reads the same
// answers as readResponse, ending at the same byte (FuzzAnswer holds it
// to net/http).
type answer struct {
	buf  []byte // bytes read and not consumed; its capacity is the most a head may take here
	head bool   // the request was HEAD

	inBody    bool
	body      int64 // body bytes still to come; -1: until the connection closes
	code      int
	keepAlive bool
}

// answerBuffer is as much of a head as the loop reads itself: a head
// longer goes to readResponse, as one longer than its bufio.Reader's
// buffer goes to net/http there.
const answerBuffer = 4096

// progress is what an answer's bytes so far make.
type progress uint8

const (
	needMore  progress = iota // wait for more bytes
	whole                     // the answer is complete: code and keepAlive say it
	notSimple                 // give buf and the rest of the stream to readResponse
	cut                       // the connection closed in the middle of the answer
)

// start readies a for the answer to a new request; bytes still in buf
// (sent after the last answer) stay, as they would in a bufio.Reader.
func (a *answer) start(head bool) {
	a.head, a.inBody, a.body, a.code, a.keepAlive = head, false, 0, 0, false
}

// step consumes what it can of buf; eof says the connection closed after
// it.
func (a *answer) step(eof bool) progress {
	if !a.inBody {
		code, keepAlive, n, ok := parseSimpleHead(a.buf, a.head)
		if !ok {
			switch {
			case headEnds(a.buf), len(a.buf) == cap(a.buf):
				return notSimple
			case eof:
				return cut
			}
			return needMore
		}
		a.consume(n.head)
		a.inBody, a.body, a.code, a.keepAlive = true, n.body, code, keepAlive
	}
	switch {
	case a.body < 0:
		a.buf = a.buf[:0]
		if eof {
			return whole
		}
		return needMore
	case int64(len(a.buf)) >= a.body:
		a.consume(int(a.body))
		a.body = 0
		return whole
	}
	a.body -= int64(len(a.buf))
	a.buf = a.buf[:0]
	if eof {
		return cut
	}
	return needMore
}

// headEnds reports whether buf holds an empty line, which ends a head as
// net/http reads one (a bare LF ends a line there too): then the head is
// whole, and if it is not simple waiting would not make it so.
func headEnds(buf []byte) bool {
	return bytes.Contains(buf, []byte("\n\n")) || bytes.Contains(buf, []byte("\n\r\n"))
}

// consume drops the first n bytes of buf, keeping the rest at its start.
func (a *answer) consume(n int) {
	a.buf = a.buf[:copy(a.buf, a.buf[n:])]
}

// errCut is the error of an answer cut short, as readResponse gives it.
var errCut = io.ErrUnexpectedEOF
