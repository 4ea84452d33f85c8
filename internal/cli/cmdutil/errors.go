package cmdutil

import (
	"errors"
	"fmt"
)

// FlagError is a usage mistake: the CLI prints it with the command's usage hint and exits 2.
type FlagError struct{ err error }

func (e *FlagError) Error() string { return e.err.Error() }
func (e *FlagError) Unwrap() error { return e.err }

// FlagErrorf returns a formatted FlagError.
func FlagErrorf(format string, a ...any) error {
	return &FlagError{err: fmt.Errorf(format, a...)}
}

// HintError carries a next step for the user alongside the error.
type HintError struct {
	Err  error
	Hint string
}

func (e *HintError) Error() string { return e.Err.Error() }
func (e *HintError) Unwrap() error { return e.Err }

// WithHint attaches a hint to err.
func WithHint(err error, format string, a ...any) error {
	if err == nil {
		return nil
	}
	return &HintError{Err: err, Hint: fmt.Sprintf(format, a...)}
}

// Hint returns the hint attached to err, if any.
func Hint(err error) string {
	var h *HintError
	if errors.As(err, &h) {
		return h.Hint
	}
	return ""
}
