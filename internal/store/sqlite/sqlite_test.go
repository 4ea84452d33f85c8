package sqlite

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/mlship/mlship/internal/store"
	"github.com/mlship/mlship/internal/store/storetest"
)

func TestConformance(t *testing.T) {
	paths := map[store.Store]string{}
	open := func(t *testing.T, path string) store.Store {
		s, err := Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		paths[s] = path
		return s
	}
	storetest.Run(t, storetest.Factory{
		New: func(t *testing.T) store.Store { return open(t, filepath.Join(t.TempDir(), "mlship.db")) },
		Reopen: func(t *testing.T, old store.Store) store.Store {
			old.Close()
			return open(t, paths[old])
		},
	})
}

func TestMigrateIsIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mlship.db")
	for i := 0; i < 2; i++ {
		s, err := Open(context.Background(), path)
		if err != nil {
			t.Fatalf("open #%d: %v", i+1, err)
		}
		s.Close()
	}
}
