package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

const serviceCols = `workspace, name, compute_type, compute_target, state, error, models, inference_config, deployment_config,
	source_sha256, primary_key, secondary_key, description, tags, properties, generation, replicas, created_time, updated_time, versions`

func serviceArgs(s store.Service) []any {
	models, _ := json.Marshal(s.Models)
	tags, _ := json.Marshal(nonNil(s.Tags))
	props, _ := json.Marshal(nonNil(s.Properties))
	versions := []byte("[]")
	if len(s.Versions) > 0 {
		versions, _ = json.Marshal(s.Versions)
	}
	return []any{s.Workspace, s.Name, s.ComputeType, s.ComputeTarget, s.State, s.Error, string(models),
		rawOr(s.InferenceConfig), rawOr(s.DeploymentConfig), s.SourceSHA256, s.PrimaryKey, s.SecondaryKey,
		s.Description, string(tags), string(props), s.Generation, s.Replicas, fmtTime(s.CreatedTime), fmtTime(s.UpdatedTime), string(versions)}
}

func rawOr(r json.RawMessage) string {
	if len(r) == 0 {
		return "{}"
	}
	return string(r)
}

func scanService(r scanner) (store.Service, error) {
	var s store.Service
	var models, inf, dep, tags, props, created, updated, versions string
	err := r.Scan(&s.Workspace, &s.Name, &s.ComputeType, &s.ComputeTarget, &s.State, &s.Error, &models, &inf, &dep,
		&s.SourceSHA256, &s.PrimaryKey, &s.SecondaryKey, &s.Description, &tags, &props, &s.Generation, &s.Replicas, &created, &updated, &versions)
	if err != nil {
		return s, err
	}
	s.InferenceConfig, s.DeploymentConfig = json.RawMessage(inf), json.RawMessage(dep)
	s.CreatedTime, s.UpdatedTime = parseTime(created), parseTime(updated)
	for _, f := range []struct {
		src string
		dst any
	}{{models, &s.Models}, {tags, &s.Tags}, {props, &s.Properties}, {versions, &s.Versions}} {
		if err := json.Unmarshal([]byte(f.src), f.dst); err != nil {
			return s, err
		}
	}
	return s, nil
}

// CreateService implements store.Store.
func (s *Store) CreateService(ctx context.Context, svc store.Service) error {
	return s.tx(ctx, func(tx txn) error {
		var n int
		if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM workspaces WHERE name = ?`, svc.Workspace).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return errdefs.NotFound("workspace %q not found", svc.Workspace)
		}
		_, err := tx.exec(ctx, `INSERT INTO services (`+serviceCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`, serviceArgs(svc)...)
		if s.d.IsUnique(err) {
			return errdefs.Conflict("service %q already exists (service names are unique on a server, as scoring URIs hold only the name)", svc.Name)
		}
		return err
	})
}

// GetService implements store.Store.
func (s *Store) GetService(ctx context.Context, workspace, name string) (store.Service, error) {
	svc, err := scanService(s.queryRow(ctx, `SELECT `+serviceCols+` FROM services WHERE workspace = ? AND name = ?`, workspace, name))
	if errors.Is(err, sql.ErrNoRows) {
		return svc, errdefs.NotFound("service %q not found in workspace %q", name, workspace)
	}
	return svc, err
}

// ListServices implements store.Store.
func (s *Store) ListServices(ctx context.Context, workspace string) ([]store.Service, error) {
	rows, err := s.query(ctx, `SELECT `+serviceCols+` FROM services WHERE ? = '' OR workspace = ? ORDER BY workspace, name`, workspace, workspace)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Service
	for rows.Next() {
		svc, err := scanService(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, svc)
	}
	return out, rows.Err()
}

// UpdateService implements store.Store.
func (s *Store) UpdateService(ctx context.Context, svc store.Service) error {
	args := serviceArgs(svc)
	res, err := s.exec(ctx, `UPDATE services SET compute_type=?, compute_target=?, state=?, error=?, models=?, inference_config=?,
		deployment_config=?, source_sha256=?, primary_key=?, secondary_key=?, description=?, tags=?, properties=?, generation=?, replicas=?,
		created_time=?, updated_time=?, versions=? WHERE workspace = ? AND name = ?`, append(args[2:], svc.Workspace, svc.Name)...)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.NotFound("service %q not found in workspace %q", svc.Name, svc.Workspace)
	}
	return nil
}

// DeleteService implements store.Store.
func (s *Store) DeleteService(ctx context.Context, workspace, name string) error {
	res, err := s.exec(ctx, `DELETE FROM services WHERE workspace = ? AND name = ?`, workspace, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.NotFound("service %q not found in workspace %q", name, workspace)
	}
	return nil
}

// ServicesWithDigest implements store.Store.
func (s *Store) ServicesWithDigest(ctx context.Context, sha256 string) (int, error) {
	var n int
	// An endpoint's versions keep their sources in the versions JSON.
	err := s.queryRow(ctx, `SELECT COUNT(*) FROM services WHERE source_sha256 = ? OR `+s.d.Instr+`(versions, ?) > 0`, sha256, `"sourceSha256":"`+sha256+`"`).Scan(&n)
	return n, err
}

const opCols = `id, workspace, kind, target, state, error, created_time, updated_time`

func scanOp(r scanner) (store.Operation, error) {
	var op store.Operation
	var created, updated string
	err := r.Scan(&op.ID, &op.Workspace, &op.Kind, &op.Target, &op.State, &op.Error, &created, &updated)
	op.CreatedTime, op.UpdatedTime = parseTime(created), parseTime(updated)
	return op, err
}

// CreateOperation implements store.Store.
func (s *Store) CreateOperation(ctx context.Context, op store.Operation) error {
	_, err := s.exec(ctx, `INSERT INTO operations (`+opCols+`) VALUES (?,?,?,?,?,?,?,?)`,
		op.ID, op.Workspace, op.Kind, op.Target, op.State, op.Error, fmtTime(op.CreatedTime), fmtTime(op.UpdatedTime))
	if s.d.IsUnique(err) {
		return errdefs.Conflict("operation %q already exists", op.ID)
	}
	return err
}

// GetOperation implements store.Store.
func (s *Store) GetOperation(ctx context.Context, id string) (store.Operation, error) {
	op, err := scanOp(s.queryRow(ctx, `SELECT `+opCols+` FROM operations WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return op, errdefs.NotFound("operation %q not found", id)
	}
	return op, err
}

// UpdateOperation implements store.Store.
func (s *Store) UpdateOperation(ctx context.Context, op store.Operation) error {
	res, err := s.exec(ctx, `UPDATE operations SET state = ?, error = ?, updated_time = ? WHERE id = ?`,
		op.State, op.Error, fmtTime(op.UpdatedTime), op.ID)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.NotFound("operation %q not found", op.ID)
	}
	return nil
}

// ListOperations implements store.Store.
func (s *Store) ListOperations(ctx context.Context, state string) ([]store.Operation, error) {
	rows, err := s.query(ctx, `SELECT `+opCols+` FROM operations WHERE ? = '' OR state = ? ORDER BY created_time`, state, state)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Operation
	for rows.Next() {
		op, err := scanOp(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, op)
	}
	return out, rows.Err()
}
