package image

import (
	"context"
	"errors"
	"net"
	"net/http"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/mlship/mlship/internal/errdefs"
)

// classify marks a registry client error with its errdefs kind, keeping the error itself.
func classify(err error) error {
	if err == nil || errdefs.Kind(err) != nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	var te *transport.Error
	if errors.As(err, &te) {
		for _, d := range te.Errors {
			switch d.Code {
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return errdefs.WithKind(errdefs.ErrNotFound, err)
			case transport.UnauthorizedErrorCode, transport.DeniedErrorCode:
				return errdefs.WithKind(errdefs.ErrUnauthorized, err)
			}
		}
		switch {
		case te.StatusCode == http.StatusNotFound:
			return errdefs.WithKind(errdefs.ErrNotFound, err)
		case te.StatusCode == http.StatusUnauthorized || te.StatusCode == http.StatusForbidden:
			return errdefs.WithKind(errdefs.ErrUnauthorized, err)
		case te.StatusCode >= 500 || te.StatusCode == http.StatusTooManyRequests:
			return errdefs.WithKind(errdefs.ErrUnavailable, err)
		}
		return errdefs.WithKind(errdefs.ErrUpstream, err)
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return errdefs.WithKind(errdefs.ErrUnavailable, err)
	}
	return err
}
