package errdefs

import "net/http"

// httpKinds is the one mapping between error kinds and HTTP answers, used by the server to
// answer and by the client to read answers back into kinds.
var httpKinds = []struct {
	kind   error
	status int
	code   string
}{
	{ErrInvalid, http.StatusBadRequest, "BadRequest"},
	{ErrNotFound, http.StatusNotFound, "NotFound"},
	{ErrConflict, http.StatusConflict, "Conflict"},
	{ErrUnauthorized, http.StatusUnauthorized, "Unauthorized"},
	{ErrForbidden, http.StatusForbidden, "Forbidden"},
	{ErrTooLarge, http.StatusRequestEntityTooLarge, "PayloadTooLarge"},
	{ErrUnavailable, http.StatusServiceUnavailable, "ServiceUnavailable"},
	{ErrTimeout, http.StatusGatewayTimeout, "Timeout"},
	{ErrNotImplemented, http.StatusNotImplemented, "NotImplemented"},
}

// HTTPStatus is the status and error code that answer an error; unknown kinds are 500.
func HTTPStatus(err error) (int, string) {
	kind := Kind(err)
	for _, k := range httpKinds {
		if k.kind == kind {
			return k.status, k.code
		}
	}
	return http.StatusInternalServerError, "InternalError"
}

// KindOfStatus is the kind an HTTP status stands for, or nil.
func KindOfStatus(status int) error {
	for _, k := range httpKinds {
		if k.status == status {
			return k.kind
		}
	}
	return nil
}
