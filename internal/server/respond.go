package server

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/errdefs"
)

// apiFunc is how handlers are written: return a value to encode as JSON, or an error.
type apiFunc func(r *http.Request) (any, error)

// created marks a value answered with 201 Created.
type created struct{ v any }

// noContent is answered with 204.
type noContent struct{}

// statusOf maps an error to its HTTP status and error code.
func statusOf(err error) (int, string) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return http.StatusRequestEntityTooLarge, "PayloadTooLarge"
	}
	return errdefs.HTTPStatus(err)
}

func (s *Server) wrap(f apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, err := f(r)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		switch v := v.(type) {
		case noContent:
			w.WriteHeader(http.StatusNoContent)
		case created:
			writeJSON(w, http.StatusCreated, v.v)
		case accepted:
			w.Header().Set("Operation-Location", v.location)
			writeJSON(w, http.StatusAccepted, v.op)
		default:
			writeJSON(w, http.StatusOK, v)
		}
	}
}

func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code := statusOf(err)
	msg := err.Error()
	if status == http.StatusInternalServerError {
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error; the server log has the details"
	}
	if status == http.StatusRequestEntityTooLarge {
		msg = "request body is larger than the server's upload limit of " + formatBytes(s.opts.MaxUploadBytes) +
			"; raise it with 'mlship server --max-upload-bytes N' or register a smaller model"
	}
	writeJSON(w, status, api.ErrorBody{Error: api.ErrorDetail{Code: code, Message: msg}})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if err := json.NewEncoder(w).Encode(v); err != nil {
		slog.Debug("write response", "err", err)
	}
}
