package api

import (
	"encoding/json"
	"io"
)

func encodeJSON(w io.Writer, v any) error { return json.NewEncoder(w).Encode(v) }

func decodeJSON(r io.Reader, v any) error { return json.NewDecoder(r).Decode(v) }
