package server

import (
	"encoding/json"
	"io"
	"net/http"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/errdefs"
	"github.com/mlship/mlship/internal/naming"
	"github.com/mlship/mlship/internal/store"
)

// maxJSONBody bounds JSON request bodies (model uploads have their own limit).
const maxJSONBody = 1 << 20

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errdefs.Invalid("request body is not valid JSON for this resource: %v", err)
	}
	return nil
}

func toAPIWorkspace(ws store.Workspace) api.Workspace {
	return api.Workspace{Name: ws.Name, Description: ws.Description, CreatedTime: ws.CreatedTime}
}

func (s *Server) listWorkspaces(r *http.Request) (any, error) {
	list, err := s.store.ListWorkspaces(r.Context())
	if err != nil {
		return nil, err
	}
	out := make([]api.Workspace, 0, len(list))
	for _, ws := range list {
		out = append(out, toAPIWorkspace(ws))
	}
	return out, nil
}

func (s *Server) createWorkspace(r *http.Request) (any, error) {
	var in api.Workspace
	if err := decodeBody(r, &in); err != nil {
		return nil, err
	}
	if err := naming.Workspace(in.Name); err != nil {
		return nil, err
	}
	if err := naming.Description(in.Description); err != nil {
		return nil, err
	}
	ws := store.Workspace{Name: in.Name, Description: in.Description, CreatedTime: s.opts.Now().UTC()}
	if err := s.store.CreateWorkspace(r.Context(), ws); err != nil {
		return nil, err
	}
	return created{toAPIWorkspace(ws)}, nil
}

func (s *Server) getWorkspace(r *http.Request) (any, error) {
	ws, err := s.store.GetWorkspace(r.Context(), r.PathValue("ws"))
	if err != nil {
		return nil, err
	}
	return toAPIWorkspace(ws), nil
}
