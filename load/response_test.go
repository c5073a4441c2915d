package load

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"testing"
	"testing/iotest"
)

// referenceRead reads an answer as net/http's Transport does: 1xx answers
// but 101 skipped, the body read to its end.
func referenceRead(br *bufio.Reader, head bool) (code int, keepAlive bool, err error) {
	method := http.MethodGet
	if head {
		method = http.MethodHead
	}
	for range maxInformational + 1 {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return 0, false, err
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			return 0, false, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode <= 199 && resp.StatusCode != 101 {
			continue
		}
		return resp.StatusCode, !resp.Close && resp.StatusCode != 101, nil
	}
	return 0, false, io.ErrUnexpectedEOF
}

type readOutcome struct {
	Code      int
	KeepAlive bool
	Failed    bool
	Consumed  int // bytes of the stream read for the answer
}

func readWith(read func(*bufio.Reader, bool) (int, bool, error), stream []byte, head, oneByte bool) readOutcome {
	src := bytes.NewReader(stream)
	var r io.Reader = src
	if oneByte {
		r = iotest.OneByteReader(src)
	}
	br := bufio.NewReaderSize(r, 4096)
	if _, err := br.Peek(1); err != nil { // as the transport does first
		return readOutcome{Failed: true}
	}
	code, keepAlive, err := read(br, head)
	if err != nil {
		return readOutcome{Failed: true}
	}
	return readOutcome{Code: code, KeepAlive: keepAlive, Consumed: len(stream) - src.Len() - br.Buffered()}
}

var responseSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n",
	"HTTP/1.1 200 OK\r\nDate: x\r\nContent-Type: text/plain\r\ncontent-length:  0 \r\n\r\n",
	"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 5\r\nConnection: close\r\n\r\nbusy!",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X\r\n\r\n2\r\nok\r\n0\r\nX: y\r\n\r\nnext",
	"HTTP/1.1 204 No Content\r\n\r\n",
	"HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n",
	"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\n\r\nuntil the end",
	"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length: +2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nContent-Length : 2\r\n\r\nok",
	"HTTP/1.1 200 OK\r\nX: a\r\n b\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\nContent-Length: 0\n\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\ncut",
	"HTTP/1.1  200 OK\r\n\r\n",
	"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n",
	"HTTP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: caf\xc3\xa9\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nX: a\x7fb\r\nContent-Length: 0\r\n\r\n",
	"garbage\r\n\r\n",
}

// FuzzReadResponse holds readResponse to net/http: the same status, the
// same choice to keep the connection, the same bytes consumed, failing on
// the same streams, whether the head arrives at once or a byte at a time.
func FuzzReadResponse(f *testing.F) {
	for _, s := range responseSeeds {
		f.Add([]byte(s), false)
		f.Add([]byte(s), true)
	}
	f.Fuzz(func(t *testing.T, stream []byte, head bool) {
		for _, oneByte := range []bool{false, true} {
			want := readWith(referenceRead, stream, head, oneByte)
			got := readWith(readResponse, stream, head, oneByte)
			if got != want {
				t.Fatalf("readResponse(%q, head %v, a byte at a time %v) = %+v, net/http gives %+v", stream, head, oneByte, got, want)
			}
		}
	})
}

// The simple heads a server sends are read in place: no allocation.
func TestSimpleAnswerAllocatesNothing(t *testing.T) {
	stream := []byte("HTTP/1.1 200 OK\r\nDate: Mon, 01 Jan 2026 00:00:00 GMT\r\nContent-Length: 2\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nok")
	src := bytes.NewReader(stream)
	br := bufio.NewReaderSize(src, 4096)
	allocs := testing.AllocsPerRun(100, func() {
		src.Reset(stream)
		br.Reset(src)
		_, _ = br.Peek(1) // as the transport does first
		if code, keep, err := readResponse(br, false); code != 200 || !keep || err != nil {
			t.Fatalf("readResponse = %d, %v, %v", code, keep, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per simple answer, want 0", allocs)
	}
}
