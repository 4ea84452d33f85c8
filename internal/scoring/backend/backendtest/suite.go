// Package backendtest is the conformance suite every scoring backend passes.
package backendtest

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/scoring/backend"
)

// Fixture is a backend under test and requests it must handle.
type Fixture struct {
	New        func(t *testing.T) backend.Backend // a fresh, unstarted backend
	Valid      []byte                             // a request body scored successfully
	CheckValid func(t *testing.T, res *backend.Result)
	BadInput   []byte // a body answered with ErrBadInput; nil if the backend cannot tell (no schema)
	Platform   string
}

// Run checks the backend contract: start, metadata, scoring (also concurrent), bad input,
// deadlines, and Close being idempotent and final.
func Run(t *testing.T, f Fixture) {
	b := f.New(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := b.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	defer b.Close()

	t.Run("Metadata", func(t *testing.T) {
		m := b.Metadata()
		if m.Platform != f.Platform || m.Name == "" || m.Version == "" {
			t.Fatalf("metadata %+v: want platform %q and a name and version", m, f.Platform)
		}
	})
	t.Run("Score", func(t *testing.T) {
		res, err := b.Score(ctx, &backend.Request{Body: f.Valid})
		if err != nil {
			t.Fatalf("Score: %v", err)
		}
		f.CheckValid(t, res)
	})
	t.Run("Concurrent", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 200)
		for g := 0; g < 8; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < 25; i++ {
					rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
					res, err := b.Score(rctx, &backend.Request{Body: f.Valid})
					cancel()
					if err != nil {
						errs <- err
						return
					}
					f.CheckValid(t, res)
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("concurrent Score: %v", err)
		}
	})
	t.Run("BadInput", func(t *testing.T) {
		if f.BadInput == nil {
			t.Skip("this fixture has no input schema, so the backend cannot reject input itself")
		}
		_, err := b.Score(ctx, &backend.Request{Body: f.BadInput})
		if !errors.Is(err, backend.ErrBadInput) {
			t.Fatalf("Score(%s) err = %v, want ErrBadInput", f.BadInput, err)
		}
		if _, err := b.Score(ctx, &backend.Request{Body: f.Valid}); err != nil {
			t.Fatalf("Score after bad input: %v", err)
		}
	})
	t.Run("ExpiredDeadline", func(t *testing.T) {
		dctx, cancel := context.WithDeadline(ctx, time.Now().Add(-time.Second))
		defer cancel()
		done := make(chan error, 1)
		go func() { _, err := b.Score(dctx, &backend.Request{Body: f.Valid}); done <- err }()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, backend.ErrTimeout) {
				t.Fatalf("Score past its deadline: %v, want success or ErrTimeout", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Score past its deadline hung")
		}
		if _, err := b.Score(ctx, &backend.Request{Body: f.Valid}); err != nil {
			t.Fatalf("Score after an expired deadline: %v", err)
		}
	})
	t.Run("Close", func(t *testing.T) {
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		done := make(chan error, 1)
		go func() { _, err := b.Score(ctx, &backend.Request{Body: f.Valid}); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("Score after Close succeeded")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Score after Close hung")
		}
	})
}
