// Package sqlstore is store.Store over database/sql, shared by the SQLite and PostgreSQL stores:
// the same tables and queries, with a Dialect for what differs (placeholders, errors, migrations).
package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

// Dialect is what differs between databases.
type Dialect struct {
	// Numbered says placeholders are $1, $2, ... (PostgreSQL); the queries are written with ?.
	Numbered bool
	// IsUnique reports whether err is a unique or primary key violation.
	IsUnique func(error) bool
	// Migrations holds NNNN_name.sql files, applied in order, each once.
	Migrations fs.FS
	// MigrationLock, if set, runs first in each migration's transaction, so servers starting
	// together apply a migration once (PostgreSQL: an advisory transaction lock).
	MigrationLock string
	// Instr is the function that returns the position of its second argument in its first (0 if absent).
	Instr string
}

// Store is a store.Store over one database.
type Store struct {
	db *sql.DB
	d  Dialect
}

var _ store.Store = (*Store)(nil)

// New applies pending migrations to db and returns the store; the store owns db from then on, and
// closes it if New fails.
func New(ctx context.Context, db *sql.DB, d Dialect) (*Store, error) {
	s := &Store{db: db, d: d}
	if err := s.migrate(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

// q rewrites a query's ? placeholders for the dialect. The queries hold no ? other than
// placeholders (values always travel as arguments).
func (s *Store) q(query string) string {
	if !s.d.Numbered {
		return query
	}
	var b strings.Builder
	n := 0
	for _, c := range query {
		if c == '?' {
			n++
			b.WriteString("$" + strconv.Itoa(n))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (s *Store) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return s.db.ExecContext(ctx, s.q(query), args...)
}

func (s *Store) query(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	return s.db.QueryContext(ctx, s.q(query), args...)
}

func (s *Store) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return s.db.QueryRowContext(ctx, s.q(query), args...)
}

// txn is a transaction whose queries are rebound like the store's.
type txn struct {
	*sql.Tx
	s *Store
}

func (t txn) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	return t.ExecContext(ctx, t.s.q(query), args...)
}

func (t txn) queryRow(ctx context.Context, query string, args ...any) *sql.Row {
	return t.QueryRowContext(ctx, t.s.q(query), args...)
}

func (s *Store) migrate(ctx context.Context) error {
	names, err := fs.Glob(s.d.Migrations, "*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		v, err := strconv.Atoi(strings.SplitN(name, "_", 2)[0])
		if err != nil {
			return fmt.Errorf("migration %s: bad name", name)
		}
		body, err := fs.ReadFile(s.d.Migrations, name)
		if err != nil {
			return err
		}
		err = s.tx(ctx, func(t txn) error {
			if s.d.MigrationLock != "" {
				if _, err := t.exec(ctx, s.d.MigrationLock); err != nil {
					return err
				}
			}
			// Under the lock: PostgreSQL servers creating the table at once would otherwise collide
			// even with IF NOT EXISTS.
			if _, err := t.exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY)`); err != nil {
				return fmt.Errorf("migrations table: %w", err)
			}
			var n int
			if err := t.queryRow(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = ?`, v).Scan(&n); err != nil || n > 0 {
				return err
			}
			if _, err := t.ExecContext(ctx, string(body)); err != nil {
				return fmt.Errorf("migration %s: %w", name, err)
			}
			_, err := t.exec(ctx, `INSERT INTO schema_migrations (version) VALUES (?)`, v)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) tx(ctx context.Context, fn func(txn) error) error {
	t, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(txn{t, s}); err != nil {
		t.Rollback()
		return err
	}
	return t.Commit()
}

// Close closes the database.
func (s *Store) Close() error { return s.db.Close() }

func fmtTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func parseTime(s string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, s)
	return t
}

// CreateWorkspace implements store.Store.
func (s *Store) CreateWorkspace(ctx context.Context, ws store.Workspace) error {
	_, err := s.exec(ctx, `INSERT INTO workspaces (name, description, created_time) VALUES (?, ?, ?)`,
		ws.Name, ws.Description, fmtTime(ws.CreatedTime))
	if s.d.IsUnique(err) {
		return errdefs.Conflict("workspace %q already exists", ws.Name)
	}
	return err
}

// GetWorkspace implements store.Store.
func (s *Store) GetWorkspace(ctx context.Context, name string) (store.Workspace, error) {
	var ws store.Workspace
	var created string
	err := s.queryRow(ctx, `SELECT name, description, created_time FROM workspaces WHERE name = ?`, name).
		Scan(&ws.Name, &ws.Description, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return ws, errdefs.NotFound("workspace %q not found", name)
	}
	ws.CreatedTime = parseTime(created)
	return ws, err
}

// ListWorkspaces implements store.Store.
func (s *Store) ListWorkspaces(ctx context.Context) ([]store.Workspace, error) {
	rows, err := s.query(ctx, `SELECT name, description, created_time FROM workspaces ORDER BY name`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Workspace
	for rows.Next() {
		var ws store.Workspace
		var created string
		if err := rows.Scan(&ws.Name, &ws.Description, &created); err != nil {
			return nil, err
		}
		ws.CreatedTime = parseTime(created)
		out = append(out, ws)
	}
	return out, rows.Err()
}

// CreateModel implements store.Store.
func (s *Store) CreateModel(ctx context.Context, m store.Model) (store.Model, error) {
	tags, _ := json.Marshal(nonNil(m.Tags))
	props, _ := json.Marshal(nonNil(m.Properties))
	files, _ := json.Marshal(m.Files)
	err := s.tx(ctx, func(tx txn) error {
		var n int
		if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM workspaces WHERE name = ?`, m.Workspace).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return errdefs.NotFound("workspace %q not found", m.Workspace)
		}
		err := tx.queryRow(ctx, `INSERT INTO model_names (workspace, name, next_version) VALUES (?, ?, 2)
			ON CONFLICT (workspace, name) DO UPDATE SET next_version = model_names.next_version + 1
			RETURNING next_version - 1`, m.Workspace, m.Name).Scan(&m.Version)
		if err != nil {
			return err
		}
		_, err = tx.exec(ctx, `INSERT INTO models (workspace, name, version, description, tags, properties, created_time, sha256, size_bytes, files)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			m.Workspace, m.Name, m.Version, m.Description, string(tags), string(props), fmtTime(m.CreatedTime), m.SHA256, m.SizeBytes, string(files))
		return err
	})
	if err != nil {
		return store.Model{}, err
	}
	return m, nil
}

const modelCols = `workspace, name, version, description, tags, properties, created_time, sha256, size_bytes, files`

type scanner interface{ Scan(...any) error }

func scanModel(r scanner) (store.Model, error) {
	var m store.Model
	var tags, props, created, files string
	if err := r.Scan(&m.Workspace, &m.Name, &m.Version, &m.Description, &tags, &props, &created, &m.SHA256, &m.SizeBytes, &files); err != nil {
		return m, err
	}
	m.CreatedTime = parseTime(created)
	if err := json.Unmarshal([]byte(tags), &m.Tags); err != nil {
		return m, err
	}
	if err := json.Unmarshal([]byte(props), &m.Properties); err != nil {
		return m, err
	}
	return m, json.Unmarshal([]byte(files), &m.Files)
}

// GetModel implements store.Store.
func (s *Store) GetModel(ctx context.Context, workspace, name string, version int) (store.Model, error) {
	var row *sql.Row
	if version == 0 {
		row = s.queryRow(ctx, `SELECT `+modelCols+` FROM models WHERE workspace = ? AND name = ? ORDER BY version DESC LIMIT 1`, workspace, name)
	} else {
		row = s.queryRow(ctx, `SELECT `+modelCols+` FROM models WHERE workspace = ? AND name = ? AND version = ?`, workspace, name, version)
	}
	m, err := scanModel(row)
	if errors.Is(err, sql.ErrNoRows) {
		if version == 0 {
			return m, errdefs.NotFound("model %q not found in workspace %q", name, workspace)
		}
		return m, errdefs.NotFound("model %s:%d not found in workspace %q", name, version, workspace)
	}
	return m, err
}

// ListModels implements store.Store.
func (s *Store) ListModels(ctx context.Context, workspace string, f store.ModelFilter) ([]store.Model, error) {
	q := `SELECT ` + modelCols + ` FROM models WHERE workspace = ?`
	args := []any{workspace}
	if f.Name != "" {
		q += ` AND name = ?`
		args = append(args, f.Name)
	}
	rows, err := s.query(ctx, q+` ORDER BY name, version DESC`, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Model
	for rows.Next() {
		m, err := scanModel(rows)
		if err != nil {
			return nil, err
		}
		if f.Latest && len(out) > 0 && out[len(out)-1].Name == m.Name {
			continue
		}
		if f.MatchTags(m.Tags) {
			out = append(out, m)
		}
	}
	return out, rows.Err()
}

// DeleteModel implements store.Store.
func (s *Store) DeleteModel(ctx context.Context, workspace, name string, version int) error {
	res, err := s.exec(ctx, `DELETE FROM models WHERE workspace = ? AND name = ? AND version = ?`, workspace, name, version)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.NotFound("model %s:%d not found in workspace %q", name, version, workspace)
	}
	return nil
}

// ModelsWithDigest implements store.Store.
func (s *Store) ModelsWithDigest(ctx context.Context, sha256 string) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM models WHERE sha256 = ?`, sha256).Scan(&n)
	return n, err
}

// CreateToken implements store.Store.
func (s *Store) CreateToken(ctx context.Context, t store.Token) error {
	_, err := s.exec(ctx, `INSERT INTO tokens (id, name, hash, created_time) VALUES (?, ?, ?, ?)`,
		t.ID, t.Name, t.Hash, fmtTime(t.CreatedTime))
	if s.d.IsUnique(err) {
		return errdefs.Conflict("token %q already exists", t.ID)
	}
	return err
}

// GetToken implements store.Store.
func (s *Store) GetToken(ctx context.Context, id string) (store.Token, error) {
	var t store.Token
	var created string
	err := s.queryRow(ctx, `SELECT id, name, hash, created_time FROM tokens WHERE id = ?`, id).Scan(&t.ID, &t.Name, &t.Hash, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return t, errdefs.NotFound("token not found")
	}
	t.CreatedTime = parseTime(created)
	return t, err
}

// CountTokens implements store.Store.
func (s *Store) CountTokens(ctx context.Context) (int, error) {
	var n int
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM tokens`).Scan(&n)
	return n, err
}

func nonNil(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}
