package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/errdefs"
)

// ModelListOptions filters ListModels.
type ModelListOptions struct {
	Name   string
	Tags   []string // "k=v" or "k"
	Latest bool
}

// ListModels lists model versions, newest first within a name.
func (c *Client) ListModels(ctx context.Context, ws string, o ModelListOptions) ([]Model, error) {
	q := url.Values{}
	if o.Name != "" {
		q.Set("name", o.Name)
	}
	for _, t := range o.Tags {
		q.Add("tag", t)
	}
	if o.Latest {
		q.Set("latest", "true")
	}
	var out []Model
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "models"), q, nil, &out)
}

func versionString(v int) string {
	if v == 0 {
		return "latest"
	}
	return strconv.Itoa(v)
}

// GetModel returns one version; version 0 means the latest.
func (c *Client) GetModel(ctx context.Context, ws, name string, version int) (Model, error) {
	var out Model
	return out, c.call(ctx, http.MethodGet, wsPath(ws, "models", name, "versions", versionString(version)), nil, nil, &out)
}

// DeleteModel deletes one version.
func (c *Client) DeleteModel(ctx context.Context, ws, name string, version int) error {
	return c.call(ctx, http.MethodDelete, wsPath(ws, "models", name, "versions", strconv.Itoa(version)), nil, nil, nil)
}

// RegisterModel streams plan to the server as a new version of spec.Name. Bytes sent are also
// written to progress, if not nil. Nothing is buffered whole; the digest travels after the content.
func (c *Client) RegisterModel(ctx context.Context, ws string, spec ModelSpec, plan *archive.Plan, progress io.Writer) (Model, error) {
	var out Model
	if err := c.upload(ctx, http.MethodPost, wsPath(ws, "models"), PartModel, spec, plan, progress, &out); err != nil {
		return Model{}, fmt.Errorf("register model %s: %w", spec.Name, err)
	}
	return out, nil
}

// upload sends a multipart body: specPart (JSON), then, if plan is not nil, the content tar and its sha256.
func (c *Client) upload(ctx context.Context, method, path, specPart string, spec any, plan *archive.Plan, progress io.Writer, out any) error {
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	go func() {
		pw.CloseWithError(writeUpload(mw, specPart, spec, plan, progress))
	}()
	req, err := c.newRequest(ctx, method, path, nil, pr)
	if err != nil {
		pr.Close()
		return err
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := c.do(req)
	pr.Close() // unblocks the writer if the server answered early
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return decodeJSON(resp.Body, out)
}

func writeUpload(mw *multipart.Writer, specPart string, spec any, plan *archive.Plan, progress io.Writer) error {
	part, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Disposition": {`form-data; name="` + specPart + `"`},
		"Content-Type":        {"application/json"},
	})
	if err != nil {
		return err
	}
	if err := encodeJSON(part, spec); err != nil {
		return err
	}
	if plan == nil {
		return mw.Close()
	}
	part, err = mw.CreatePart(textproto.MIMEHeader{
		"Content-Disposition": {`form-data; name="` + PartContent + `"; filename="content.tar"`},
		"Content-Type":        {"application/x-tar"},
	})
	if err != nil {
		return err
	}
	h := sha256.New()
	dst := io.MultiWriter(part, h)
	if progress != nil {
		dst = io.MultiWriter(part, h, progress)
	}
	if err := plan.Write(dst); err != nil {
		return err
	}
	if err := mw.WriteField(PartSHA256, hex.EncodeToString(h.Sum(nil))); err != nil {
		return err
	}
	return mw.Close()
}

// DownloadOptions tune DownloadModel.
type DownloadOptions struct {
	// Overwrite replaces what the model's files would collide with in the target folder.
	Overwrite bool
	// Progress, if set, returns a writer that receives the downloaded bytes.
	Progress func(total int64) io.Writer
}

// DownloadModel writes a version's files into dir (created if needed) and returns the model.
// The archive's digest is checked; files land only when all arrived intact.
func (c *Client) DownloadModel(ctx context.Context, ws, name string, version int, dir string, o DownloadOptions) (Model, error) {
	m, err := c.GetModel(ctx, ws, name, version)
	if err != nil {
		return Model{}, err
	}
	for _, f := range m.Files {
		top, _, _ := strings.Cut(f.Path, "/")
		if _, err := os.Lstat(filepath.Join(dir, top)); err == nil && !o.Overwrite {
			return Model{}, errdefs.Conflict("%s already exists in %s: choose another target folder, or pass --overwrite", top, dir)
		}
	}
	req, err := c.newRequest(ctx, http.MethodGet, wsPath(ws, "models", name, "versions", strconv.Itoa(m.Version), "content"), nil, nil)
	if err != nil {
		return Model{}, err
	}
	resp, err := c.do(req)
	if err != nil {
		return Model{}, err
	}
	defer resp.Body.Close()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Model{}, err
	}
	tmp, err := os.MkdirTemp(dir, ".mlship-download-")
	if err != nil {
		return Model{}, err
	}
	defer os.RemoveAll(tmp)
	h := sha256.New()
	var body io.Reader = io.TeeReader(resp.Body, h)
	if o.Progress != nil {
		if w := o.Progress(resp.ContentLength); w != nil {
			body = io.TeeReader(body, w)
		}
	}
	if err := archive.Unpack(body, tmp); err != nil {
		return Model{}, fmt.Errorf("download %s: %w", m.ID, err)
	}
	io.Copy(h, resp.Body) // tar padding after the end marker is part of the digest
	if got := hex.EncodeToString(h.Sum(nil)); got != m.SHA256 {
		return Model{}, fmt.Errorf("download %s: content digest %s does not match the registered %s; nothing was written, try again", m.ID, got, m.SHA256)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return Model{}, err
	}
	for _, e := range entries {
		if o.Overwrite {
			if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
				return Model{}, fmt.Errorf("download %s: %w", m.ID, err)
			}
		}
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())); err != nil {
			return Model{}, fmt.Errorf("download %s: %w", m.ID, err)
		}
	}
	return m, nil
}
