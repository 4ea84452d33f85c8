package python

import (
	"encoding/json"
	"path/filepath"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/scoring/backend"
	"github.com/mlship/mlship/internal/scoring/backend/backendtest"
)

func TestConformance(t *testing.T) {
	t.Parallel()
	requirePython(t)
	newPool := func(script string) func(t *testing.T) backend.Backend {
		return func(t *testing.T) backend.Backend {
			p, err := New(Config{EntryScript: filepath.Join("testdata", script), ModelDir: t.TempDir(), Workers: 2, InitTimeout: 30 * time.Second, ModelName: "m", Version: "1"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
	}
	t.Run("plain", func(t *testing.T) {
		backendtest.Run(t, backendtest.Fixture{
			New:      newPool("faults.py"),
			Platform: "python",
			Valid:    []byte(`{"echo": "x"}`),
			CheckValid: func(t *testing.T, res *backend.Result) {
				var out map[string]any
				if err := json.Unmarshal(res.Body, &out); err != nil || out["echo"] != "x" {
					t.Errorf("result %s: %v", res.Body, err)
				}
			},
		})
	})
	t.Run("schema", func(t *testing.T) {
		backendtest.Run(t, backendtest.Fixture{
			New:      newPool("schema.py"),
			Platform: "python",
			Valid:    []byte(`{"data": [[1, 2, 3]]}`),
			BadInput: []byte(`{"data": [[1, 2]]}`),
			CheckValid: func(t *testing.T, res *backend.Result) {
				if string(res.Body) != `{"sums": [6.0], "frame_rows": 0}` {
					t.Errorf("result %s", res.Body)
				}
			},
		})
	})
}
