package scoring

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/tensor"
)

// Open Inference Protocol v2 (KServe/Triton) endpoints.

func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, 503, map[string]bool{"ready": false})
		return
	}
	writeJSON(w, 200, map[string]bool{"ready": true})
}

func (s *Server) handleServerMetadata(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{"name": "mlship", "version": "1", "extensions": []string{}})
}

// model checks the path's model name (and version); it writes 404 and returns false when it is not ours.
func (s *Server) model(w http.ResponseWriter, r *http.Request) bool {
	if !s.ready.Load() {
		writeError(w, 503, "the model is not ready yet")
		return false
	}
	if m := r.PathValue("model"); m != s.meta.Name {
		writeError(w, 404, fmt.Sprintf("unknown model %q; this replica serves %q", m, s.meta.Name))
		return false
	}
	if v := r.PathValue("version"); v != "" && v != s.meta.Version {
		writeError(w, 404, fmt.Sprintf("unknown version %q of model %q; this replica serves version %q", v, s.meta.Name, s.meta.Version))
		return false
	}
	return true
}

func (s *Server) handleModelMetadata(w http.ResponseWriter, r *http.Request) {
	if !s.model(w, r) {
		return
	}
	in, out := s.meta.Inputs, s.meta.Outputs
	if in == nil {
		in = []tensor.Spec{}
	}
	if out == nil {
		out = []tensor.Spec{}
	}
	writeJSON(w, 200, map[string]any{
		"name": s.meta.Name, "versions": []string{s.meta.Version}, "platform": s.meta.Platform,
		"inputs": in, "outputs": out,
	})
}

func (s *Server) handleModelReady(w http.ResponseWriter, r *http.Request) {
	if !s.ready.Load() {
		writeJSON(w, 503, map[string]any{"name": r.PathValue("model"), "ready": false})
		return
	}
	if !s.model(w, r) {
		return
	}
	writeJSON(w, 200, map[string]any{"name": s.meta.Name, "ready": true})
}

func (s *Server) handleInfer(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code := s.infer(w, r)
	s.metrics.observe(code, time.Since(start))
}

func (s *Server) infer(w http.ResponseWriter, r *http.Request) int {
	if !s.model(w, r) {
		if !s.ready.Load() {
			return 503
		}
		return 404
	}
	body, ctx, done, code := s.admit(w, r)
	if code != 0 {
		return code
	}
	defer done()
	var req tensor.InferRequest
	if err := json.Unmarshal(body.Bytes(), &req); err != nil {
		writeError(w, 400, "request body is not an OIP v2 infer request: "+err.Error())
		return 400
	}
	if len(req.Inputs) == 0 {
		writeError(w, 400, "an infer request needs at least one input tensor")
		return 400
	}
	var resp *tensor.InferResponse
	var err error
	if inf, ok := s.backend.(backend.Inferer); ok {
		resp, err = inf.Infer(ctx, &req)
	} else {
		resp, err = s.inferViaScore(ctx, &req)
	}
	if err != nil {
		return s.writeBackendError(w, err)
	}
	resp.ModelName, resp.ModelVersion, resp.ID = s.meta.Name, s.meta.Version, req.ID
	writeJSON(w, 200, resp)
	return 200
}

// inferViaScore serves OIP v2 for entry scripts: the tensors become the JSON run() reads
// ({"data": nested list} for one input, {name: nested list} for several), and a numeric result
// comes back as tensors.
func (s *Server) inferViaScore(ctx context.Context, req *tensor.InferRequest) (*tensor.InferResponse, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	for i, in := range req.Inputs {
		nested, err := tensor.Nest(in.Data, in.Shape)
		if err != nil {
			return nil, fmt.Errorf("%w: input %q: %w", backend.ErrBadInput, in.Name, err)
		}
		key := in.Name
		if len(req.Inputs) == 1 && !s.schemaHasInput(in.Name) {
			key = "data"
		}
		if i > 0 {
			buf.WriteByte(',')
		}
		k, _ := json.Marshal(key)
		buf.Write(k)
		buf.WriteByte(':')
		buf.Write(nested)
	}
	buf.WriteByte('}')
	res, err := s.backend.Score(ctx, &backend.Request{Body: buf.Bytes(), Method: "POST", Path: "/score", Alone: s.lim.alone()})
	if err != nil {
		return nil, err
	}
	if res.Status >= 400 {
		return nil, &backend.ModelError{Message: fmt.Sprintf("run() answered status %d: %s", res.Status, res.Body)}
	}
	return &tensor.InferResponse{Outputs: resultTensors(res.Body)}, nil
}

func (s *Server) schemaHasInput(name string) bool {
	var schema struct {
		Properties map[string]json.RawMessage `json:"properties"`
	}
	json.Unmarshal(s.meta.InputSchema, &schema)
	_, ok := schema.Properties[name]
	return ok
}

// resultTensors turns run()'s JSON into output tensors: a numeric array is one tensor, an object
// of numeric arrays one tensor per key; anything else one BYTES tensor holding the JSON text.
func resultTensors(body []byte) []tensor.Tensor {
	if t, ok := numericTensor("output-0", body); ok {
		return []tensor.Tensor{t}
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) == nil && len(obj) > 0 {
		keys := make([]string, 0, len(obj))
		for k := range obj {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var out []tensor.Tensor
		for _, k := range keys {
			t, ok := numericTensor(k, obj[k])
			if !ok {
				out = nil
				break
			}
			out = append(out, t)
		}
		if out != nil {
			return out
		}
	}
	text, _ := json.Marshal(string(body))
	return []tensor.Tensor{{Name: "output-0", Datatype: "BYTES", Shape: []int64{1}, Data: append(append([]byte{'['}, text...), ']')}}
}

func numericTensor(name string, raw []byte) (tensor.Tensor, bool) {
	var flat []byte
	datatype := "INT64"
	shape, err := tensor.Walk(raw, func(tok []byte) error {
		switch {
		case string(tok) == "true" || string(tok) == "false":
			datatype = "BOOL"
		case bytes.ContainsAny(tok, ".eE"):
			if datatype == "INT64" {
				datatype = "FP64"
			}
		case len(tok) > 0 && (tok[0] == '-' || (tok[0] >= '0' && tok[0] <= '9')):
		default:
			return errors.New("not numeric")
		}
		if len(flat) == 0 {
			flat = append(flat, '[')
		} else {
			flat = append(flat, ',')
		}
		flat = append(flat, tok...)
		return nil
	})
	if err != nil || len(shape) == 0 {
		return tensor.Tensor{}, false
	}
	if len(flat) == 0 {
		flat = append(flat, '[')
	}
	flat = append(flat, ']')
	return tensor.Tensor{Name: name, Datatype: datatype, Shape: shape, Data: flat}, true
}
