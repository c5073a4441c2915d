package load

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
)

// readResponse reads the answer to one request from br, as net/http's
// Transport would (skipping 1xx informational answers but 101), discards
// its body, and returns its status code and whether the connection may
// carry another request. An answer cut short is an error (and code 0).
//
// An answer whose head is already buffered and plainly simple (HTTP/1.0 or
// 1.1, header names that are tokens, values of visible ASCII, at most one
// Content-Length, no Transfer-Encoding, no folded lines, not 1xx) is read
// in place, with no allocation; any other goes to net/http's ReadResponse,
// so the two never differ in what they accept (FuzzReadResponse holds
// them to it). That is most of the answers a load generator sees, and
// ReadResponse's header map was a sixth of the engine's CPU per request.
func readResponse(br *bufio.Reader, head bool) (code int, keepAlive bool, err error) {
	if code, keepAlive, n, ok := simpleHead(br, head); ok {
		_, _ = br.Discard(n.head) // buffered: cannot fail
		switch {
		case n.body > 0:
			_, err = br.Discard(int(n.body))
		case n.body < 0:
			_, err = io.Copy(io.Discard, br)
		}
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		if err != nil {
			return 0, false, err // an answer cut short is no answer
		}
		return code, keepAlive, nil
	}
	method := http.MethodGet
	if head {
		method = http.MethodHead
	}
	for informational := 0; ; informational++ {
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			return 0, false, err
		}
		_, err = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if err != nil {
			return 0, false, err
		}
		if resp.StatusCode >= 100 && resp.StatusCode <= 199 && resp.StatusCode != http.StatusSwitchingProtocols {
			if informational == maxInformational {
				return 0, false, errors.New("load: too many 1xx informational answers")
			}
			continue
		}
		// After 101 the connection speaks another protocol.
		return resp.StatusCode, !resp.Close && resp.StatusCode != http.StatusSwitchingProtocols, nil
	}
}

// maxInformational bounds the 1xx answers before a final one.
const maxInformational = 8

// lengths says how many bytes of an answer are its head and its body; a
// body of -1 runs until the connection closes.
type lengths struct {
	head int
	body int64
}

// simpleHead parses the head buffered in br without consuming it, if it is
// plainly simple (see readResponse); ok is false otherwise.
func simpleHead(br *bufio.Reader, head bool) (code int, keepAlive bool, n lengths, ok bool) {
	buf, _ := br.Peek(br.Buffered())
	return parseSimpleHead(buf, head)
}

// parseSimpleHead parses the head at the start of buf if it is there
// whole and plainly simple (see readResponse); ok is false otherwise.
func parseSimpleHead(buf []byte, head bool) (code int, keepAlive bool, n lengths, ok bool) {
	end := bytes.Index(buf, []byte("\r\n\r\n"))
	if end < 0 {
		return 0, false, n, false
	}
	n.head = end + 4
	lines := buf[:end+2]

	// "HTTP/1.1 200 OK\r\n"
	line, lines, _ := bytes.Cut(lines, []byte("\r\n"))
	if len(line) < 12 || string(line[:7]) != "HTTP/1." || (line[7] != '0' && line[7] != '1') || line[8] != ' ' {
		return 0, false, n, false
	}
	minor := line[7] - '0'
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false, n, false
		}
		code = code*10 + int(c-'0')
	}
	if len(line) > 12 && line[12] != ' ' {
		return 0, false, n, false
	}
	if code < 200 {
		return 0, false, n, false
	}
	for _, c := range line[12:] {
		if !visible(c) {
			return 0, false, n, false
		}
	}

	length := int64(-1)
	var closeToken, keepAliveToken bool
	for len(lines) > 0 {
		line, lines, _ = bytes.Cut(lines, []byte("\r\n"))
		name, value, found := bytes.Cut(line, []byte(":"))
		if !found || len(name) == 0 {
			return 0, false, n, false
		}
		for _, c := range name {
			if !tokenByte(c) {
				return 0, false, n, false
			}
		}
		for _, c := range value {
			if !visible(c) {
				return 0, false, n, false
			}
		}
		value = bytes.Trim(value, " \t")
		switch {
		case asciiEqualFold(name, "Content-Length"):
			if length >= 0 || len(value) == 0 || len(value) > 18 {
				return 0, false, n, false
			}
			length = 0
			for _, c := range value {
				if c < '0' || c > '9' {
					return 0, false, n, false
				}
				length = length*10 + int64(c-'0')
			}
		case asciiEqualFold(name, "Transfer-Encoding"):
			return 0, false, n, false
		case asciiEqualFold(name, "Connection"):
			for len(value) > 0 {
				var token []byte
				token, value, _ = bytes.Cut(value, []byte(","))
				token = bytes.Trim(token, " \t")
				closeToken = closeToken || asciiEqualFold(token, "close")
				keepAliveToken = keepAliveToken || asciiEqualFold(token, "keep-alive")
			}
		}
	}
	keepAlive = !closeToken && (minor == 1 || keepAliveToken)
	switch {
	case head || code == http.StatusNoContent || code == http.StatusNotModified:
		n.body = 0
	case length >= 0:
		n.body = length
	default:
		n.body, keepAlive = -1, false
	}
	return code, keepAlive, n, true
}

// visible reports whether c may stand in a header value or a reason
// phrase of a simple head: visible ASCII, a space or a tab.
func visible(c byte) bool { return c == '\t' || (c >= ' ' && c < 0x7f) }

// tokenByte reports whether c may stand in a header name (RFC 9110's tchar).
func tokenByte(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// asciiEqualFold reports whether b is s, ASCII letters compared without case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c, d := b[i], s[i]
		if lower := c | 0x20; c != d && (lower != d|0x20 || lower < 'a' || lower > 'z') {
			return false
		}
	}
	return true
}
