// Package postgres is the Store for PostgreSQL, through pgx: the same tables and queries as the
// SQLite store (internal/store/sqlstore), for control planes that keep their state in a database
// server instead of a file.
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store is a store.Store over one PostgreSQL database.
type Store = sqlstore.Store

// migrationLock serializes migrations across servers that start together (any fixed key will do).
const migrationLock = `SELECT pg_advisory_xact_lock(7085736873)` // "mlship" on a phone keypad

// IsURL reports whether s names a PostgreSQL database (postgres:// or postgresql://).
func IsURL(s string) bool {
	return strings.HasPrefix(s, "postgres://") || strings.HasPrefix(s, "postgresql://")
}

// Open connects to the database at url (postgres://user:password@host:port/db?sslmode=...) and
// applies pending migrations. Errors name the server and database, never the password.
func Open(ctx context.Context, url string) (*Store, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		// pgx's parse errors do not repeat the URL; they say which part is wrong.
		return nil, errdefs.Invalid("database URL: %v", err)
	}
	where := fmt.Sprintf("PostgreSQL database %q at %s:%d (user %q)", cfg.Database, cfg.Host, cfg.Port, cfg.User)
	db := stdlib.OpenDB(*cfg)
	db.SetMaxOpenConns(16)
	db.SetConnMaxIdleTime(5 * time.Minute)
	pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("cannot reach %s: %w; check that the server runs and the URL's host, port, user, password and database are right", where, err)
	}
	sub, _ := fs.Sub(migrations, "migrations")
	s, err := sqlstore.New(ctx, db, sqlstore.Dialect{Numbered: true, IsUnique: isUnique, Migrations: sub, MigrationLock: migrationLock, Instr: "strpos"})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", where, err)
	}
	return s, nil
}

func isUnique(err error) bool {
	var e *pgconn.PgError
	return errors.As(err, &e) && e.Code == "23505" // unique_violation
}
