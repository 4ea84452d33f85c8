package env

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"

	"github.com/mlship/mlship/internal/errdefs"
)

var hashRE = regexp.MustCompile(`^[0-9a-f]{64}$`)

// List returns the manifests of the finished virtualenvs, oldest first.
func (c *Cache) List() ([]Manifest, error) {
	ents, err := os.ReadDir(c.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list environments: %w", err)
	}
	var out []Manifest
	for _, e := range ents {
		if !e.IsDir() || !hashRE.MatchString(e.Name()) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(c.dir, e.Name(), ManifestFile))
		if err != nil {
			continue // being built, or an unfinished build
		}
		var m Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("list environments: %s: %w", e.Name(), err)
		}
		out = append(out, m)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedTime.Before(out[j].CreatedTime) })
	return out, nil
}

// Remove deletes the virtualenv of hash. Replicas still running in it keep their open files;
// new ones get a fresh build.
func (c *Cache) Remove(hash string) error {
	if !hashRE.MatchString(hash) {
		return errdefs.Invalid("environment %q: not an environment hash", hash)
	}
	dir := filepath.Join(c.dir, hash)
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return errdefs.NotFound("environment %s: not in the cache", short(hash))
	}
	m := c.hashLock(hash)
	m.Lock()
	defer m.Unlock()
	if err := os.MkdirAll(filepath.Join(c.dir, ".locks"), 0o755); err != nil {
		return err
	}
	unlock, err := flock(context.Background(), filepath.Join(c.dir, ".locks", hash+".lock"))
	if err != nil {
		return fmt.Errorf("environment %s: lock: %w", short(hash), err)
	}
	defer unlock()
	// Drop the manifest first so nobody picks up a half-deleted environment.
	if err := os.Remove(filepath.Join(dir, ManifestFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("environment %s: %w", short(hash), err)
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("environment %s: %w", short(hash), err)
	}
	return nil
}

// Size is the disk usage of the virtualenv of hash in bytes (regular files, symlinks not followed).
func (c *Cache) Size(hash string) (int64, error) {
	if !hashRE.MatchString(hash) {
		return 0, errdefs.Invalid("environment %q: not an environment hash", hash)
	}
	var n int64
	err := filepath.WalkDir(filepath.Join(c.dir, hash), func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			n += info.Size()
		}
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return 0, errdefs.NotFound("environment %s: not in the cache", short(hash))
	}
	return n, err
}
