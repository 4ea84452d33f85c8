package sqlstore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/store"
)

const computeCols = `workspace, name, compute_type, provisioning_state, cluster_purpose, vcpus, server, namespace, context,
	kubeconfig, resource_id, registry, insecure_registry, python_image, onnx_image, node_selector, created_time`

func scanCompute(r scanner) (store.Compute, error) {
	var c store.Compute
	var created, selector string
	err := r.Scan(&c.Workspace, &c.Name, &c.ComputeType, &c.ProvisioningState, &c.ClusterPurpose, &c.VCPUs, &c.Server,
		&c.Namespace, &c.Context, &c.Kubeconfig, &c.ResourceID, &c.Registry, &c.InsecureRegistry, &c.PythonImage, &c.ONNXImage,
		&selector, &created)
	c.CreatedTime = parseTime(created)
	if err == nil && selector != "" {
		if jerr := json.Unmarshal([]byte(selector), &c.NodeSelector); jerr != nil {
			return c, fmt.Errorf("compute %s: node selector: %w", c.Name, jerr)
		}
	}
	return c, err
}

// CreateCompute implements store.Store.
func (s *Store) CreateCompute(ctx context.Context, c store.Compute) error {
	return s.tx(ctx, func(tx txn) error {
		var n int
		if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM workspaces WHERE name = ?`, c.Workspace).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return errdefs.NotFound("workspace %q not found", c.Workspace)
		}
		if err := tx.queryRow(ctx, `SELECT COUNT(*) FROM computes WHERE workspace = ? AND name = ?`, c.Workspace, c.Name).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return errdefs.Conflict("compute target %q already exists in workspace %q", c.Name, c.Workspace)
		}
		if c.Server != "" {
			var ws, name string
			err := tx.queryRow(ctx, `SELECT workspace, name FROM computes WHERE server = ? AND namespace = ?`, c.Server, c.Namespace).Scan(&ws, &name)
			if err == nil {
				return errdefs.Conflict("namespace %q of cluster %s is already attached as compute target %q (workspace %q); detach it first or use another namespace",
					c.Namespace, c.Server, name, ws)
			}
			if !errors.Is(err, sql.ErrNoRows) {
				return err
			}
		}
		selector := ""
		if len(c.NodeSelector) > 0 {
			b, err := json.Marshal(c.NodeSelector)
			if err != nil {
				return err
			}
			selector = string(b)
		}
		_, err := tx.exec(ctx, `INSERT INTO computes (`+computeCols+`) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)`,
			c.Workspace, c.Name, c.ComputeType, c.ProvisioningState, c.ClusterPurpose, c.VCPUs, c.Server, c.Namespace, c.Context,
			c.Kubeconfig, c.ResourceID, c.Registry, c.InsecureRegistry, c.PythonImage, c.ONNXImage, selector, fmtTime(c.CreatedTime))
		if s.d.IsUnique(err) {
			return errdefs.Conflict("compute target %q conflicts with an existing one", c.Name)
		}
		return err
	})
}

// GetCompute implements store.Store.
func (s *Store) GetCompute(ctx context.Context, workspace, name string) (store.Compute, error) {
	c, err := scanCompute(s.queryRow(ctx, `SELECT `+computeCols+` FROM computes WHERE workspace = ? AND name = ?`, workspace, name))
	if errors.Is(err, sql.ErrNoRows) {
		return c, errdefs.NotFound("compute target %q not found in workspace %q", name, workspace)
	}
	return c, err
}

// ListComputes implements store.Store.
func (s *Store) ListComputes(ctx context.Context, workspace string) ([]store.Compute, error) {
	rows, err := s.query(ctx, `SELECT `+computeCols+` FROM computes WHERE workspace = ? ORDER BY name`, workspace)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []store.Compute
	for rows.Next() {
		c, err := scanCompute(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// DeleteCompute implements store.Store.
func (s *Store) DeleteCompute(ctx context.Context, workspace, name string) error {
	res, err := s.exec(ctx, `DELETE FROM computes WHERE workspace = ? AND name = ?`, workspace, name)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return errdefs.NotFound("compute target %q not found in workspace %q", name, workspace)
	}
	return nil
}
