package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http/httputil"
	"testing"
)

// FuzzWalkChunked feeds any bytes to the chunked-body reader of the HTTP
// stage: what it passes on as it came is a prefix of its input, and a body
// it reads to the end decodes as net/http decodes it.
func FuzzWalkChunked(f *testing.F) {
	for _, s := range []string{
		"5\r\nhello\r\n0\r\n\r\n",
		"3;ext=1\r\nabc\r\n0\r\nX-Trailer: v\r\n\r\nNEXT",
		"a\nxxxxxxxxxx\n0\n\n",
		"ffffffffffffffff\r\n", "-1\r\n", "0\r\n", "5\r\nhel",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var raw, data bytes.Buffer
		err := walkChunked(bufio.NewReader(bytes.NewReader(in)), &raw, &data)
		if !bytes.HasPrefix(in, raw.Bytes()) {
			t.Fatalf("passed on %q, not a prefix of %q", raw.Bytes(), in)
		}
		if err != nil {
			return
		}
		want, werr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(raw.Bytes())))
		if werr == nil && !bytes.Equal(want, data.Bytes()) {
			t.Fatalf("decoded %q, net/http decodes %q", data.Bytes(), want)
		}
	})
}
