package proxy

import (
	"bytes"
	"encoding/json"
)

// jsonNumber keeps a number's text, so that numbers the toxic does not
// touch come out exactly as they went in.
type jsonNumber = json.Number

func jsonUnmarshalNumber(b []byte, v any) error {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if err := d.Decode(v); err != nil {
		return err
	}
	if d.More() {
		return &json.SyntaxError{Offset: d.InputOffset()}
	}
	return nil
}

func jsonMarshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}
