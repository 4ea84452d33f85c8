package onnx

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/backend/backendtest"
	"github.com/mlship/mlship/internal/scoring/tensor"
)

var exampleModel = filepath.Join("..", "..", "..", "examples", "onnx", "model", "model.onnx")

// requireRuntime skips without the library, except in CI, which installs it (scripts/setup-onnxruntime.sh).
func requireRuntime(t *testing.T) {
	t.Helper()
	lib := LibraryPath("")
	if _, err := os.Stat(lib); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but ONNX Runtime is missing at %s: run scripts/setup-onnxruntime.sh and set ONNXRUNTIME_LIB", lib)
		}
		t.Skipf("needs ONNX Runtime at %s (run scripts/setup-onnxruntime.sh, set ONNXRUNTIME_LIB): %v", lib, err)
	}
}

func startExample(t *testing.T) *Backend {
	t.Helper()
	requireRuntime(t)
	b, err := New(Config{ModelPath: exampleModel}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func checkProbabilities(t *testing.T, body []byte, rows int) {
	t.Helper()
	var out map[string][][]float64
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("result %s: %v", body, err)
	}
	p := out["probabilities"]
	if len(p) != rows {
		t.Fatalf("result %s: want %d rows of probabilities", body, rows)
	}
	for _, row := range p {
		sum := 0.0
		for _, v := range row {
			sum += v
		}
		if len(row) != 3 || math.Abs(sum-1) > 1e-4 {
			t.Fatalf("row %v is not a probability distribution over 3 classes", row)
		}
	}
}

func TestConformance(t *testing.T) {
	requireRuntime(t)
	backendtest.Run(t, backendtest.Fixture{
		New: func(t *testing.T) backend.Backend {
			b, err := New(Config{ModelPath: exampleModel}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return b
		},
		Platform:   "onnxruntime_onnx",
		Valid:      []byte(`{"data": [[5.1, 3.5, 1.4, 0.2]]}`),
		BadInput:   []byte(`{"data": [[1, 2, 3]]}`),
		CheckValid: func(t *testing.T, res *backend.Result) { checkProbabilities(t, res.Body, 1) },
	})
}

func TestMetadataFromModel(t *testing.T) {
	b := startExample(t)
	m := b.Metadata()
	want := backend.Metadata{Name: "model", Version: "1", Platform: "onnxruntime_onnx",
		Inputs:  []tensor.Spec{{Name: "input", Datatype: "FP32", Shape: []int64{-1, 4}}},
		Outputs: []tensor.Spec{{Name: "probabilities", Datatype: "FP32", Shape: []int64{-1, 3}}}}
	if got, _ := json.Marshal(m); string(got) != string(must(json.Marshal(want))) {
		t.Fatalf("metadata %s, want %s", got, must(json.Marshal(want)))
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

func TestScoreForms(t *testing.T) {
	b := startExample(t)
	ctx := context.Background()
	for _, body := range []string{
		`{"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}`,
		`{"input": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}`,
		`[[5.1, 3.5, 1.4, 0.2], [6.7, 3, 5.2, 2.3]]`,
	} {
		res, err := b.Score(ctx, &backend.Request{Body: []byte(body)})
		if err != nil {
			t.Fatalf("%s: %v", body, err)
		}
		checkProbabilities(t, res.Body, 2)
	}
}

func TestBadInputSaysExpectedShape(t *testing.T) {
	b := startExample(t)
	for body, want := range map[string]string{
		`{"data": [[1, 2, 3]]}`:      "expected shape [-1, 4], got [1, 3]",
		`{"data": [1, 2, 3, 4]}`:     "expected shape [-1, 4], got [4]",
		`{"data": [[1, 2], [3]]}`:    "ragged",
		`{"data": [["a", 2, 3, 4]]}`: "expected FP32 of shape [-1, 4]",
		`{"data": [[1, 2, 3, 4]`:     `{"data": <array of shape [-1, 4]>}`,
		`{"other": [[1, 2, 3, 4]]}`:  `missing input "input"`,
		`{"data": []}`:               "expected shape [-1, 4], got [0]",
	} {
		_, err := b.Score(context.Background(), &backend.Request{Body: []byte(body)})
		if !errors.Is(err, backend.ErrBadInput) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrBadInput mentioning %q", body, err, want)
		}
	}
}

func TestInfer(t *testing.T) {
	b := startExample(t)
	ctx := context.Background()
	req := &tensor.InferRequest{Inputs: []tensor.Tensor{{Name: "input", Datatype: "FP32", Shape: []int64{2, 4}, Data: json.RawMessage(`[5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]`)}}}
	resp, err := b.Infer(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Outputs) != 1 || resp.Outputs[0].Name != "probabilities" || resp.Outputs[0].Datatype != "FP32" || tensor.ShapeString(resp.Outputs[0].Shape) != "[2, 3]" {
		t.Fatalf("outputs %+v", resp.Outputs)
	}
	var flat []float64
	if err := json.Unmarshal(resp.Outputs[0].Data, &flat); err != nil || len(flat) != 6 {
		t.Fatalf("flat data %s: %v", resp.Outputs[0].Data, err)
	}
	// Same input through /score gives the same numbers.
	res, _ := b.Score(ctx, &backend.Request{Body: []byte(`{"data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}`)})
	var nested map[string][][]float64
	json.Unmarshal(res.Body, &nested)
	if nested["probabilities"][1][2] != flat[5] {
		t.Fatalf("infer %v and score %v disagree", flat, nested)
	}
	for _, bad := range []tensor.Tensor{
		{Name: "input", Datatype: "FP32", Shape: []int64{2, 3}, Data: json.RawMessage(`[1,2,3,4,5,6]`)},
		{Name: "input", Datatype: "FP32", Shape: []int64{2, 4}, Data: json.RawMessage(`[1,2,3]`)},
		{Name: "input", Datatype: "INT64", Shape: []int64{1, 4}, Data: json.RawMessage(`[1,2,3,4]`)},
	} {
		_, err := b.Infer(ctx, &tensor.InferRequest{Inputs: []tensor.Tensor{bad}})
		if !errors.Is(err, backend.ErrBadInput) {
			t.Errorf("infer %+v: err = %v, want ErrBadInput", bad, err)
		}
	}
}

// Runs cut off by their deadline must not leave the pooled run options terminated.
func TestDeadlinesDoNotPoisonLaterRuns(t *testing.T) {
	b := startExample(t)
	body := []byte(`{"data": [[5.1, 3.5, 1.4, 0.2]]}`)
	for i := 0; i < 300; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%30)*time.Microsecond)
		_, err := b.Score(ctx, &backend.Request{Body: body})
		cancel()
		if err != nil && !errors.Is(err, backend.ErrTimeout) {
			t.Fatalf("run %d with a tiny deadline: %v", i, err)
		}
		if _, err := b.Score(context.Background(), &backend.Request{Body: body}); err != nil {
			t.Fatalf("run after run %d: %v", i, err)
		}
	}
}
