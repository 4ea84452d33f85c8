// Package backend is the contract between the scoring server and a model runtime (Python workers, ONNX Runtime).
package backend

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/mlship/mlship/internal/scoring/tensor"
)

// Errors a backend returns; the server maps each to one HTTP status.
var (
	ErrBadInput      = errors.New("bad input")                   // 400
	ErrModel         = errors.New("model code raised")           // 502
	ErrWorkerCrashed = errors.New("scoring worker died")         // 502
	ErrTimeout       = errors.New("scoring timed out")           // 504
	ErrNotReady      = errors.New("backend is not ready")        // 503
	ErrUnsupported   = errors.New("not supported by this model") // 501
	ErrInit          = errors.New("model initialization failed")
)

// ModelError is an exception raised by the user's code; Message goes to the client, Traceback to the log.
type ModelError struct {
	Type      string
	Message   string
	Traceback string
}

func (e *ModelError) Error() string {
	if e.Type != "" {
		return e.Type + ": " + e.Message
	}
	return e.Message
}

// Is makes errors.Is(err, ErrModel) hold for any ModelError.
func (e *ModelError) Is(target error) bool { return target == ErrModel }

// InitError is init() (or model loading) failing; Traceback is for the log.
type InitError struct {
	Worker    int
	Message   string
	Traceback string
}

func (e *InitError) Error() string { return "init() failed: " + e.Message }

// Is makes errors.Is(err, ErrInit) hold for any InitError.
func (e *InitError) Is(target error) bool { return target == ErrInit }

// Request is one scoring call. Body is the raw request body; the rest matters only to raw-HTTP entry scripts.
type Request struct {
	Body   []byte
	Method string
	Path   string
	Query  string
	Header http.Header
	// Alone says no other request is in flight or queued in this replica, so a backend may poll
	// for the answer on a spare core instead of sleeping (waking costs more than a short run()).
	Alone bool
}

// Result is what the model answered. Status 0 means 200; ContentType "" means application/json.
type Result struct {
	Status      int
	ContentType string
	Header      http.Header
	Body        []byte
	// RunTime is how long the model's own code took: run() in the worker, or the ONNX session; 0 if
	// not known. The replica reports it in the Server-Timing header and a histogram.
	RunTime time.Duration
}

// Metadata describes the served model for /swagger.json and OIP v2 model metadata.
type Metadata struct {
	Name     string
	Version  string
	Platform string
	Inputs   []tensor.Spec
	Outputs  []tensor.Spec
	// InputSchema and OutputSchema are swagger 2.0 schema objects (JSON); nil means unknown.
	InputSchema  []byte
	OutputSchema []byte
	// RawHTTP is set when the entry script takes the whole HTTP request (@rawhttp); GET /score then reaches it too.
	RawHTTP bool
}

// Backend runs one model. Start returns once the model is ready to score (every worker initialized).
// Score is called concurrently, up to the server's concurrency limit; ctx carries the scoring deadline.
type Backend interface {
	Start(ctx context.Context) error
	Score(ctx context.Context, req *Request) (*Result, error)
	Metadata() Metadata
	Close() error
}

// Inferer is implemented by backends that take Open Inference Protocol v2 tensors.
type Inferer interface {
	Infer(ctx context.Context, req *tensor.InferRequest) (*tensor.InferResponse, error)
}

// RestartCounter is implemented by backends that replace crashed or stuck workers.
type RestartCounter interface {
	Restarts() uint64
}

// QueueReporter is implemented by backends that hold admitted requests until a worker is free.
type QueueReporter interface {
	Queued() int // admitted requests no worker has started yet
}
