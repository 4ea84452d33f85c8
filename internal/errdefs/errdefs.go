// Package errdefs defines the kinds of error mlship reports, so that one place can map them to HTTP statuses and exit codes.
package errdefs

import (
	"errors"
	"fmt"
)

// Kinds. Test with errors.Is(err, errdefs.ErrNotFound).
var (
	ErrInvalid        = errors.New("invalid request")
	ErrNotFound       = errors.New("not found")
	ErrConflict       = errors.New("conflict")
	ErrUnauthorized   = errors.New("unauthorized")
	ErrForbidden      = errors.New("forbidden")
	ErrTooLarge       = errors.New("payload too large")
	ErrUnavailable    = errors.New("unavailable")
	ErrTimeout        = errors.New("timeout")
	ErrUpstream       = errors.New("upstream failure")
	ErrNotImplemented = errors.New("not implemented")
)

type kindError struct {
	kind error
	err  error
}

func (e *kindError) Error() string   { return e.err.Error() }
func (e *kindError) Unwrap() []error { return []error{e.kind, e.err} }

// WithKind marks err as being of kind; errors.Is matches both the kind and err's own chain.
func WithKind(kind, err error) error {
	if err == nil {
		return nil
	}
	return &kindError{kind: kind, err: err}
}

// Invalid returns a formatted ErrInvalid.
func Invalid(format string, a ...any) error { return WithKind(ErrInvalid, fmt.Errorf(format, a...)) }

// NotFound returns a formatted ErrNotFound.
func NotFound(format string, a ...any) error { return WithKind(ErrNotFound, fmt.Errorf(format, a...)) }

// Conflict returns a formatted ErrConflict.
func Conflict(format string, a ...any) error { return WithKind(ErrConflict, fmt.Errorf(format, a...)) }

// Unauthorized returns a formatted ErrUnauthorized.
func Unauthorized(format string, a ...any) error {
	return WithKind(ErrUnauthorized, fmt.Errorf(format, a...))
}

// TooLarge returns a formatted ErrTooLarge.
func TooLarge(format string, a ...any) error { return WithKind(ErrTooLarge, fmt.Errorf(format, a...)) }

// Kind reports the first kind err carries, or nil.
func Kind(err error) error {
	for _, k := range []error{ErrInvalid, ErrNotFound, ErrConflict, ErrUnauthorized, ErrForbidden,
		ErrTooLarge, ErrUnavailable, ErrTimeout, ErrUpstream, ErrNotImplemented} {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}
