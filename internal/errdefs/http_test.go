package errdefs

import (
	"errors"
	"fmt"
	"net/http"
	"testing"
)

func TestHTTPMappingRoundTrips(t *testing.T) {
	for _, k := range httpKinds {
		err := WithKind(k.kind, fmt.Errorf("wrapped: %w", errors.New("x")))
		status, code := HTTPStatus(fmt.Errorf("context: %w", err))
		if status != k.status || code != k.code {
			t.Errorf("%v answers %d %s, want %d %s", k.kind, status, code, k.status, k.code)
		}
		if got := KindOfStatus(status); got != k.kind {
			t.Errorf("status %d reads back as %v, want %v", status, got, k.kind)
		}
	}
	if s, c := HTTPStatus(errors.New("plain")); s != http.StatusInternalServerError || c != "InternalError" {
		t.Errorf("an error without a kind answers %d %s, want 500 InternalError", s, c)
	}
	if KindOfStatus(http.StatusTeapot) != nil {
		t.Error("an unmapped status has a kind")
	}
}
