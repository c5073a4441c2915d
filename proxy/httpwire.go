package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// The HTTP stage forwards messages as they came: it reads each head (the
// start line and header lines) as raw bytes and parses a copy only to learn
// the method, path and framing; a body is copied by its framing, a chunked
// one chunk by chunk with its chunk lines and trailer. What no toxic
// changes goes on byte for byte; a toxic that changes headers edits those
// lines alone, and one that rewrites a body replaces its framing with a
// Content-Length.

// maxHead bounds a message head, as net/http's default MaxHeaderBytes does.
const maxHead = 1 << 20

// errHeadTooLarge: a head that did not end within maxHead bytes.
var errHeadTooLarge = errors.New("message head over 1 MiB")

// readHead reads one message head from r as it came, up to and including
// the blank line that ends it. A head that breaks off gives what came of
// it with the error.
func readHead(r *bufio.Reader) ([]byte, error) {
	var h []byte
	lineStart := 0
	for {
		frag, err := r.ReadSlice('\n')
		h = append(h, frag...)
		if len(h) > maxHead {
			return h, errHeadTooLarge
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err != nil:
			if err == io.EOF && len(h) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return h, err
		}
		if line := h[lineStart:]; lineStart > 0 && (len(line) == 1 || len(line) == 2 && line[0] == '\r') {
			return h, nil
		}
		lineStart = len(h)
	}
}

// framing is how a message's body is delimited.
type framing struct {
	chunked bool
	length  int64 // with !chunked: the body's length, -1 until the connection ends
}

// requestFraming parses a request head; a head net/http would refuse
// gives its error.
func requestFraming(h []byte) (*http.Request, framing, error) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(h)))
	if err != nil {
		return nil, framing{}, err
	}
	f := framing{chunked: isChunked(req.TransferEncoding), length: max(req.ContentLength, 0)}
	return req, f, nil
}

// responseFraming parses the head of the response to req.
func responseFraming(h []byte, req *http.Request) (*http.Response, framing, error) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(h)), req)
	if err != nil {
		return nil, framing{}, err
	}
	code := resp.StatusCode
	switch {
	case req.Method == http.MethodHead || code/100 == 1 || code == http.StatusNoContent || code == http.StatusNotModified:
		return resp, framing{}, nil
	case isChunked(resp.TransferEncoding):
		return resp, framing{chunked: true}, nil
	}
	return resp, framing{length: resp.ContentLength}, nil
}

func isChunked(te []string) bool { return len(te) > 0 && te[0] == "chunked" }

// copyBody copies a body from r to w as it came.
func copyBody(w io.Writer, r *bufio.Reader, f framing) error {
	switch {
	case f.chunked:
		return walkChunked(r, w, nil)
	case f.length < 0:
		_, err := io.Copy(w, r)
		return err
	}
	_, err := io.CopyN(w, r, f.length)
	return err
}

// readBody reads a body whole, decoded, up to limit bytes.
func readBody(r *bufio.Reader, f framing, limit int64) ([]byte, error) {
	var b bytes.Buffer
	lw := &limitedWriter{w: &b, left: limit}
	var err error
	switch {
	case f.chunked:
		err = walkChunked(r, nil, lw)
	case f.length > limit:
		err = errBodyTooLarge
	case f.length < 0:
		_, err = io.Copy(lw, r)
	default:
		_, err = io.CopyN(lw, r, f.length)
	}
	return b.Bytes(), err
}

var errBodyTooLarge = errors.New("body over the limit")

// limitedWriter fails once more than left bytes are written to it.
type limitedWriter struct {
	w    io.Writer
	left int64
}

func (l *limitedWriter) Write(b []byte) (int, error) {
	if int64(len(b)) > l.left {
		return 0, errBodyTooLarge
	}
	l.left -= int64(len(b))
	return l.w.Write(b)
}

// maxChunkLine bounds a chunk-size line or a trailer line.
const maxChunkLine = 4096

// walkChunked reads one chunked body from r, to the end of its trailer,
// writing it as it came to raw and its decoded data to data (either may
// be nil).
func walkChunked(r *bufio.Reader, raw, data io.Writer) error {
	out := func(w io.Writer, b []byte) error {
		if w == nil {
			return nil
		}
		_, err := w.Write(b)
		return err
	}
	trailerLen := 0
	for {
		line, err := readLine(r)
		if err != nil {
			return err
		}
		if err := out(raw, line); err != nil {
			return err
		}
		size, err := parseChunkSize(line)
		if err != nil {
			return err
		}
		if size == 0 { // the trailer, to its blank line
			for {
				line, err := readLine(r)
				if err != nil {
					return err
				}
				if trailerLen += len(line); trailerLen > maxHead {
					return errHeadTooLarge
				}
				if err := out(raw, line); err != nil {
					return err
				}
				if len(bytes.TrimRight(line, "\r\n")) == 0 {
					return nil
				}
			}
		}
		var w io.Writer = io.Discard
		switch {
		case raw != nil && data != nil:
			w = io.MultiWriter(raw, data)
		case raw != nil:
			w = raw
		case data != nil:
			w = data
		}
		if _, err := io.CopyN(w, r, size); err != nil {
			return err
		}
		end, err := readLine(r)
		if err != nil {
			return err
		}
		if len(bytes.TrimRight(end, "\r\n")) != 0 {
			return errors.New("chunk not followed by a line end")
		}
		if err := out(raw, end); err != nil {
			return err
		}
	}
}

// readLine reads one line, with its ending, of at most maxChunkLine bytes.
func readLine(r *bufio.Reader) ([]byte, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > maxChunkLine {
			return nil, errors.New("chunk line too long")
		}
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return line, err
	}
}

// parseChunkSize reads the size of a chunk-size line (hex, before any
// extension).
func parseChunkSize(line []byte) (int64, error) {
	s := strings.TrimRight(string(line), "\r\n")
	if i := strings.IndexByte(s, ';'); i >= 0 {
		s = s[:i]
	}
	n, err := strconv.ParseInt(strings.TrimRight(s, " \t"), 16, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad chunk size line %q", line)
	}
	return n, nil
}

// headLines splits a head into its start line and header fields, each
// field with its continuation lines (obsolete folding), endings included;
// the blank line that ends the head is not among them.
func headLines(h []byte) (start []byte, fields [][]byte) {
	lines := bytes.SplitAfter(h, []byte("\n"))
	start = lines[0]
	for _, l := range lines[1:] {
		switch {
		case len(bytes.TrimRight(l, "\r\n")) == 0:
			return start, fields
		case (l[0] == ' ' || l[0] == '\t') && len(fields) > 0:
			fields[len(fields)-1] = append(fields[len(fields)-1], l...)
		default:
			fields = append(fields, slices.Clip(l))
		}
	}
	return start, fields
}

// fieldName returns a header field's name as written.
func fieldName(field []byte) string {
	name, _, _ := strings.Cut(string(field), ":")
	return strings.TrimSpace(name)
}

// framingField reports whether a header field delimits the body: the
// stage keeps those as they are, or the message would no longer end where
// it does.
func framingField(name string) bool {
	return strings.EqualFold(name, "Content-Length") || strings.EqualFold(name, "Transfer-Encoding")
}

// joinHead makes a head of a start line and fields.
func joinHead(start []byte, fields [][]byte) []byte {
	out := slices.Clone(start)
	for _, f := range fields {
		out = append(out, f...)
	}
	return append(out, "\r\n"...)
}

// dropFields removes the fields that drop reports true for.
func dropFields(fields [][]byte, drop func(name string) bool) [][]byte {
	return slices.DeleteFunc(fields, func(f []byte) bool { return drop(fieldName(f)) })
}

// editHead applies an http_header toxic to a head: Drop removes fields,
// Set replaces them, Add appends; the fields that frame the body stay as
// they are. Every other byte of the head is kept.
func editHead(h []byte, e HTTPHeader) []byte {
	start, fields := headLines(h)
	named := func(names ...string) func(string) bool {
		return func(n string) bool {
			return !framingField(n) && slices.ContainsFunc(names, func(d string) bool { return strings.EqualFold(d, n) })
		}
	}
	fields = dropFields(fields, named(e.Drop...))
	add := func(m map[string]string, replace bool) {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			name := http.CanonicalHeaderKey(k)
			if framingField(name) {
				continue
			}
			if replace {
				fields = dropFields(fields, named(k))
			}
			fields = append(fields, []byte(name+": "+m[k]+"\r\n"))
		}
	}
	add(e.Set, true)
	add(e.Add, false)
	return joinHead(start, fields)
}

// withLength replaces a head's framing by a Content-Length of n.
func withLength(h []byte, n int) []byte {
	start, fields := headLines(h)
	fields = dropFields(fields, func(name string) bool { return framingField(name) || strings.EqualFold(name, "Trailer") })
	return joinHead(start, append(fields, []byte("Content-Length: "+strconv.Itoa(n)+"\r\n")))
}
