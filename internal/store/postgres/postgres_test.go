package postgres

import (
	"context"
	"errors"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
	"github.com/mlship/mlship/internal/store/postgres/pgtest"
	"github.com/mlship/mlship/internal/store/storetest"
)

var srv *pgtest.Server

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m, &srv)) }

// The conformance suite every store passes, against a real PostgreSQL server.
func TestConformance(t *testing.T) {
	s := pgtest.Require(t, srv)
	urls := map[store.Store]string{}
	open := func(t *testing.T, url string) store.Store {
		st, err := Open(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		urls[st] = url
		return st
	}
	storetest.Run(t, storetest.Factory{
		New: func(t *testing.T) store.Store { return open(t, s.NewDatabase(t)) },
		Reopen: func(t *testing.T, old store.Store) store.Store {
			old.Close()
			return open(t, urls[old])
		},
	})
}

// Servers starting together on one new database apply each migration once.
func TestConcurrentMigrations(t *testing.T) {
	url := pgtest.Require(t, srv).NewDatabase(t)
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st, err := Open(context.Background(), url)
			if err == nil {
				st.Close()
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("open %d: %v", i, err)
		}
	}
	st, err := Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.CreateWorkspace(context.Background(), store.Workspace{Name: "ws"}); err != nil {
		t.Fatalf("the migrated database does not work: %v", err)
	}
}

// A wrong URL or an unreachable server is a clear error that does not repeat the password.
func TestOpenErrors(t *testing.T) {
	ctx := context.Background()
	if _, err := Open(ctx, "postgres://u:pw@127.0.0.1:notaport/db"); !errors.Is(err, errdefs.ErrInvalid) || strings.Contains(err.Error(), "pw") {
		t.Errorf("malformed URL: %v", err)
	}
	// A port nothing listens on: 1 is privileged and unused on the test machines.
	_, err := Open(ctx, "postgres://u:s3cret@127.0.0.1:1/mydb?sslmode=disable&connect_timeout=2")
	if err == nil || !strings.Contains(err.Error(), `cannot reach PostgreSQL database "mydb" at 127.0.0.1:1`) || strings.Contains(err.Error(), "s3cret") {
		t.Errorf("unreachable server: %v", err)
	}
	if s := srv; s != nil && s.URL != "" {
		bad, _ := url.Parse(s.URL)
		bad.Path = "/no_such_db"
		if _, err := Open(ctx, bad.String()); err == nil || !strings.Contains(err.Error(), "no_such_db") {
			t.Errorf("missing database: %v", err)
		}
	}
}

func TestIsURL(t *testing.T) {
	for s, want := range map[string]bool{"postgres://h/db": true, "postgresql://h/db": true, "/var/lib/mlship": false, "sqlite:///x": false} {
		if IsURL(s) != want {
			t.Errorf("IsURL(%q) = %v", s, !want)
		}
	}
}
