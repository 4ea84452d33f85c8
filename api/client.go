package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mlship/mlship/internal/errdefs"
)

// Client calls an mlship control plane.
type Client struct {
	base  string
	token string
	hc    *http.Client
}

// NewClient returns a client for the server at base (e.g. http://127.0.0.1:7878); hc nil means a default client.
func NewClient(base, token string, hc *http.Client) *Client {
	if hc == nil {
		hc = &http.Client{}
	}
	return &Client{base: strings.TrimRight(base, "/"), token: token, hc: hc}
}

// Server is the base URL the client talks to.
func (c *Client) Server() string { return c.base }

// Error is an error answer from the server.
type Error struct {
	StatusCode int
	Code       string
	Message    string
}

func (e *Error) Error() string { return e.Message }

// Is maps HTTP statuses to errdefs kinds, so callers test errors.Is(err, errdefs.ErrNotFound).
func (e *Error) Is(target error) bool {
	kind := errdefs.KindOfStatus(e.StatusCode)
	return kind != nil && kind == target
}

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body io.Reader) (*http.Request, error) {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	return req, nil
}

func (c *Client) do(req *http.Request) (*http.Response, error) {
	resp, err := c.hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			// The URL adds nothing the user does not know; keep the cause.
			return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, ue.Err)
		}
		return nil, err
	}
	if resp.StatusCode >= 300 {
		defer resp.Body.Close()
		return nil, decodeError(resp)
	}
	return resp, nil
}

func decodeError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var eb ErrorBody
	if json.Unmarshal(b, &eb) == nil && eb.Error.Message != "" {
		return &Error{StatusCode: resp.StatusCode, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	msg := strings.TrimSpace(string(b))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{StatusCode: resp.StatusCode, Code: http.StatusText(resp.StatusCode), Message: fmt.Sprintf("server answered %d: %s", resp.StatusCode, msg)}
}

// call sends in as JSON (if not nil) and decodes the answer into out (if not nil).
func (c *Client) call(ctx context.Context, method, path string, q url.Values, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := c.newRequest(ctx, method, path, q, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

func wsPath(ws string, parts ...string) string {
	p := "/api/v1/workspaces/" + url.PathEscape(ws)
	for _, s := range parts {
		p += "/" + url.PathEscape(s)
	}
	return p
}

// Health checks /healthz (no token needed).
func (c *Client) Health(ctx context.Context) error {
	return c.call(ctx, http.MethodGet, "/healthz", nil, nil, nil)
}

// ListWorkspaces lists workspaces.
func (c *Client) ListWorkspaces(ctx context.Context) ([]Workspace, error) {
	var out []Workspace
	return out, c.call(ctx, http.MethodGet, "/api/v1/workspaces", nil, nil, &out)
}

// GetWorkspace returns one workspace.
func (c *Client) GetWorkspace(ctx context.Context, name string) (Workspace, error) {
	var out Workspace
	return out, c.call(ctx, http.MethodGet, wsPath(name), nil, nil, &out)
}

// CreateWorkspace creates a workspace.
func (c *Client) CreateWorkspace(ctx context.Context, ws Workspace) (Workspace, error) {
	var out Workspace
	return out, c.call(ctx, http.MethodPost, "/api/v1/workspaces", nil, ws, &out)
}
