package onnx

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/tensor"
)

// element is what both the tensor codec and ONNX Runtime handle.
type element interface {
	ort.TensorData
	tensor.Number
}

// Score takes {"data": nested array} (one input; the input's own name works too, as does a bare
// array) or {"name": nested array, ...} and answers {"output name": nested array, ...}.
func (b *Backend) Score(ctx context.Context, req *backend.Request) (*backend.Result, error) {
	raws, err := b.scoreInputs(req.Body)
	if err != nil {
		return nil, err
	}
	inputs := make([]ort.Value, len(b.inputs))
	defer destroyAll(inputs)
	for i, spec := range b.inputs {
		if inputs[i], err = newValue(spec, raws[i], nil); err != nil {
			return nil, err
		}
	}
	start := time.Now()
	outputs, err := b.run(ctx, inputs)
	took := time.Since(start)
	if err != nil {
		return nil, err
	}
	defer destroyAll(outputs)
	body := make([]byte, 0, 256)
	body = append(body, '{')
	for i, v := range outputs {
		if i > 0 {
			body = append(body, ',')
		}
		name, _ := json.Marshal(b.outputs[i].name)
		body = append(body, name...)
		body = append(body, ':')
		if body, err = appendValue(body, v, true); err != nil {
			return nil, err
		}
	}
	body = append(body, '}')
	return &backend.Result{Body: body, RunTime: took}, nil
}

func (b *Backend) scoreInputs(body []byte) ([][]byte, error) {
	trimmed := strings.TrimSpace(string(body))
	if len(b.inputs) == 1 && strings.HasPrefix(trimmed, "[") {
		return [][]byte{body}, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		return nil, fmt.Errorf("%w: request body must be JSON like %s: %v", backend.ErrBadInput, b.example(), err)
	}
	raws := make([][]byte, len(b.inputs))
	for i, spec := range b.inputs {
		raw, ok := obj[spec.name]
		if !ok && len(b.inputs) == 1 {
			raw, ok = obj["data"]
		}
		if !ok {
			return nil, fmt.Errorf("%w: missing input %q; send %s", backend.ErrBadInput, spec.name, b.example())
		}
		raws[i] = raw
	}
	return raws, nil
}

func (b *Backend) example() string {
	if len(b.inputs) == 1 {
		return fmt.Sprintf(`{"data": <array of shape %s>}`, tensor.ShapeString(b.inputs[0].shape))
	}
	parts := make([]string, len(b.inputs))
	for i, in := range b.inputs {
		parts[i] = fmt.Sprintf(`"%s": <array of shape %s>`, in.name, tensor.ShapeString(in.shape))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// Infer implements backend.Inferer for Open Inference Protocol v2 requests.
func (b *Backend) Infer(ctx context.Context, req *tensor.InferRequest) (*tensor.InferResponse, error) {
	byName := make(map[string]*tensor.Tensor, len(req.Inputs))
	for i := range req.Inputs {
		byName[req.Inputs[i].Name] = &req.Inputs[i]
	}
	inputs := make([]ort.Value, len(b.inputs))
	defer destroyAll(inputs)
	for i, spec := range b.inputs {
		in, ok := byName[spec.name]
		if !ok {
			if len(b.inputs) == 1 && len(req.Inputs) == 1 {
				in = &req.Inputs[0] // a single input may go by any name
			} else {
				return nil, fmt.Errorf("%w: missing input tensor %q (model inputs: %s)", backend.ErrBadInput, spec.name, b.inputNames())
			}
		}
		if in.Datatype != "" && !strings.EqualFold(in.Datatype, oipType(spec.dt)) {
			return nil, fmt.Errorf("%w: input %q has datatype %s; the model takes %s", backend.ErrBadInput, spec.name, in.Datatype, oipType(spec.dt))
		}
		var err error
		if inputs[i], err = newValue(spec, in.Data, in.Shape); err != nil {
			return nil, err
		}
	}
	outputs, err := b.run(ctx, inputs)
	if err != nil {
		return nil, err
	}
	defer destroyAll(outputs)
	want := map[string]bool{}
	for _, o := range req.Outputs {
		want[o.Name] = true
	}
	resp := &tensor.InferResponse{}
	for i, v := range outputs {
		spec := b.outputs[i]
		if len(want) > 0 && !want[spec.name] {
			continue
		}
		data, err := appendValue(nil, v, false)
		if err != nil {
			return nil, err
		}
		resp.Outputs = append(resp.Outputs, tensor.Tensor{Name: spec.name, Datatype: oipType(spec.dt), Shape: []int64(v.GetShape()), Data: data})
	}
	if len(resp.Outputs) == 0 {
		return nil, fmt.Errorf("%w: none of the requested outputs exist (model outputs: %s)", backend.ErrBadInput, b.outputNames())
	}
	return resp, nil
}

func (b *Backend) inputNames() string {
	n := make([]string, len(b.inputs))
	for i, in := range b.inputs {
		n[i] = in.name
	}
	return strings.Join(n, ", ")
}

func (b *Backend) outputNames() string {
	n := make([]string, len(b.outputs))
	for i, o := range b.outputs {
		n[i] = o.name
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// run executes the model; ctx's deadline terminates the run (504).
func (b *Backend) run(ctx context.Context, inputs []ort.Value) ([]ort.Value, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.closed || b.session == nil {
		return nil, backend.ErrNotReady
	}
	if err := ctx.Err(); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("onnx run: %w", backend.ErrTimeout)
		}
		return nil, err
	}
	opts, _ := b.runOpts.Get().(*ort.RunOptions)
	if opts == nil {
		var err error
		if opts, err = ort.NewRunOptions(); err != nil {
			return nil, fmt.Errorf("onnx run options: %w", err)
		}
	}
	terminated := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { opts.Terminate(); close(terminated) })
	outputs := make([]ort.Value, len(b.outputs))
	err := b.session.RunWithOptions(inputs, outputs, opts)
	if !stop() {
		// Terminate was called (or is being called): wait for it, then clear the flag, so the
		// options go back to the pool clean.
		<-terminated
		opts.UnsetTerminate()
	}
	b.runOpts.Put(opts)
	if err != nil {
		destroyAll(outputs)
		if ctx.Err() != nil {
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("onnx run: %w", backend.ErrTimeout)
			}
			return nil, ctx.Err()
		}
		// ONNX Runtime rejects what the metadata allowed (e.g. a dimension the graph fixes).
		return nil, fmt.Errorf("%w: the model rejected the input: %v", backend.ErrBadInput, err)
	}
	return outputs, nil
}

func destroyAll(vs []ort.Value) {
	for _, v := range vs {
		if v != nil {
			v.Destroy()
		}
	}
}

// newValue parses raw JSON (nested, or flat with shape) into a tensor of spec's type.
func newValue(spec ioSpec, raw []byte, shape []int64) (ort.Value, error) {
	switch spec.dt {
	case ort.TensorElementDataTypeFloat:
		return makeTensor[float32](spec, raw, shape)
	case ort.TensorElementDataTypeDouble:
		return makeTensor[float64](spec, raw, shape)
	case ort.TensorElementDataTypeInt64:
		return makeTensor[int64](spec, raw, shape)
	case ort.TensorElementDataTypeInt32:
		return makeTensor[int32](spec, raw, shape)
	case ort.TensorElementDataTypeInt16:
		return makeTensor[int16](spec, raw, shape)
	case ort.TensorElementDataTypeInt8:
		return makeTensor[int8](spec, raw, shape)
	case ort.TensorElementDataTypeUint8:
		return makeTensor[uint8](spec, raw, shape)
	case ort.TensorElementDataTypeUint16:
		return makeTensor[uint16](spec, raw, shape)
	case ort.TensorElementDataTypeUint32:
		return makeTensor[uint32](spec, raw, shape)
	case ort.TensorElementDataTypeUint64:
		return makeTensor[uint64](spec, raw, shape)
	case ort.TensorElementDataTypeBool:
		return makeTensor[bool](spec, raw, shape)
	}
	return nil, fmt.Errorf("input %q: unsupported element type %s", spec.name, spec.dt)
}

func makeTensor[T element](spec ioSpec, raw []byte, shape []int64) (ort.Value, error) {
	data, got, err := tensor.Parse[T](raw, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: input %q: %w (expected %s of shape %s)", backend.ErrBadInput, spec.name, err, oipType(spec.dt), tensor.ShapeString(spec.shape))
	}
	if len(shape) > 0 {
		if tensor.Elements(shape) != int64(len(data)) {
			return nil, fmt.Errorf("%w: input %q: %d elements do not fill the declared shape %s", backend.ErrBadInput, spec.name, len(data), tensor.ShapeString(shape))
		}
		got = shape
	}
	if !tensor.Compatible(spec.shape, got) {
		return nil, fmt.Errorf("%w: input %q: expected shape %s, got %s", backend.ErrBadInput, spec.name, tensor.ShapeString(spec.shape), tensor.ShapeString(got))
	}
	if tensor.Elements(got) == 0 {
		return nil, fmt.Errorf("%w: input %q is empty (shape %s)", backend.ErrBadInput, spec.name, tensor.ShapeString(got))
	}
	t, err := ort.NewTensor(ort.NewShape(got...), data)
	if err != nil {
		return nil, fmt.Errorf("input %q: %w", spec.name, err)
	}
	return t, nil
}

// appendValue writes an output tensor as JSON, nested by its shape or flat (OIP v2).
func appendValue(dst []byte, v ort.Value, nested bool) ([]byte, error) {
	shape := []int64(v.GetShape())
	if !nested {
		shape = []int64{tensor.Elements(shape)}
	}
	switch t := v.(type) {
	case *ort.Tensor[float32]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[float64]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[int64]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[int32]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[int16]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[int8]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[uint8]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[uint16]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[uint32]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[uint64]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	case *ort.Tensor[bool]:
		return tensor.AppendJSON(dst, t.GetData(), shape), nil
	}
	return nil, fmt.Errorf("onnx output of type %T is not supported", v)
}
