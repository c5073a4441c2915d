package load

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

// errStall stands for a read that would wait: the server sent no more yet.
var errStall = errors.New("no more bytes yet")

// stalling gives its bytes, then errStall instead of io.EOF.
type stalling struct{ r *bytes.Reader }

func (s stalling) Read(p []byte) (int, error) {
	if s.r.Len() == 0 {
		return 0, errStall
	}
	return s.r.Read(p)
}

// readByAnswer reads stream as the event loop does: reads of at most piece
// bytes into the answer's buffer, each followed by a step, and readResponse
// for an answer that is not simple. With stall, the server then waits
// instead of closing the connection: an answer still waiting for bytes
// then is no answer.
func readByAnswer(stream []byte, head bool, piece int, stall bool) readOutcome {
	a := answer{buf: make([]byte, 0, answerBuffer)}
	a.start(head)
	src := bytes.NewReader(stream)
	for {
		k := min(cap(a.buf)-len(a.buf), piece, src.Len())
		eof := k == 0
		if eof && stall {
			return readOutcome{Failed: true}
		}
		if eof && len(a.buf) == 0 && !a.inBody {
			return readOutcome{Failed: true} // as the transport's first Peek
		}
		n, _ := src.Read(a.buf[len(a.buf) : len(a.buf)+k])
		a.buf = a.buf[:len(a.buf)+n]
		switch a.step(eof) {
		case whole:
			return readOutcome{Code: a.code, KeepAlive: a.keepAlive, Consumed: len(stream) - src.Len() - len(a.buf)}
		case cut:
			return readOutcome{Failed: true}
		case notSimple:
			held := bytes.NewReader(bytes.Clone(a.buf))
			var rest io.Reader = src
			if stall {
				rest = stalling{src}
			}
			br := bufio.NewReaderSize(io.MultiReader(held, rest), 4096)
			code, keepAlive, err := readResponse(br, head)
			if err != nil {
				return readOutcome{Failed: true}
			}
			return readOutcome{Code: code, KeepAlive: keepAlive, Consumed: len(stream) - held.Len() - src.Len() - br.Buffered()}
		}
	}
}

// referenceStalled reads stream as net/http does when the server then
// waits instead of closing the connection.
func referenceStalled(stream []byte, head bool) readOutcome {
	src := bytes.NewReader(stream)
	br := bufio.NewReaderSize(stalling{src}, 4096)
	if _, err := br.Peek(1); err != nil {
		return readOutcome{Failed: true}
	}
	code, keepAlive, err := referenceRead(br, head)
	if err != nil {
		return readOutcome{Failed: true}
	}
	return readOutcome{Code: code, KeepAlive: keepAlive, Consumed: len(stream) - src.Len() - br.Buffered()}
}

// FuzzAnswer holds the event loop's reading of answers to net/http's: the
// same status, the same choice to keep the connection, the same bytes
// consumed, failing on the same streams, whether the bytes come at once,
// in pieces or a byte at a time, and whether the server then closes the
// connection or waits (an answer the loop would wait on for ever, where
// net/http has it whole, is a failure here).
func FuzzAnswer(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Add(bytes.Repeat([]byte("x"), 5000), false)
	f.Add([]byte("HTTP/1.1 200 OK\r\nX: "+strings.Repeat("y", 5000)+"\r\nContent-Length: 2\r\n\r\nok"), false)
	f.Fuzz(func(t *testing.T, stream []byte, head bool) {
		want := readWith(referenceRead, stream, head, false)
		wantStalled := referenceStalled(stream, head)
		for _, piece := range []int{answerBuffer, 7, 1} {
			if got := readByAnswer(stream, head, piece, false); got != want {
				t.Fatalf("answer(%q, head %v, pieces of %d) = %+v, net/http gives %+v", stream, head, piece, got, want)
			}
			if got := readByAnswer(stream, head, piece, true); got != wantStalled {
				t.Fatalf("answer(%q, head %v, pieces of %d, the server then waits) = %+v, net/http gives %+v", stream, head, piece, got, wantStalled)
			}
		}
	})
}
