// Package archive packs a model file or folder into a deterministic tar stream and reads such streams back safely.
package archive

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
)

// File is one regular file in an archive.
type File struct {
	Path string `json:"path"`
	Size int64  `json:"size"`
}

type source struct {
	rel  string // slash path inside the archive
	abs  string
	info fs.FileInfo
}

// Plan lists what Pack will write for root: its base name and, for a folder, everything below it.
type Plan struct {
	sources []source
	// Size is the total of the files' sizes (for progress bars).
	Size int64
}

// Files returns the regular files the plan holds.
func (p *Plan) Files() []File {
	var out []File
	for _, s := range p.sources {
		if s.info.Mode().IsRegular() {
			out = append(out, File{Path: s.rel, Size: s.info.Size()})
		}
	}
	return out
}

// NewPlan walks root (a file or folder). Names in the archive start with root's base name, as Azure ML keeps them.
func NewPlan(root string) (*Plan, error) {
	info, err := os.Stat(root)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, errdefs.Invalid("model path %s does not exist", root)
		}
		return nil, errdefs.Invalid("model path %s: %v", root, err)
	}
	base := filepath.Base(filepath.Clean(root))
	p := &Plan{}
	if !info.IsDir() {
		if !info.Mode().IsRegular() {
			return nil, errdefs.Invalid("model path %s is not a regular file or folder", root)
		}
		p.sources = []source{{rel: base, abs: root, info: info}}
		p.Size = info.Size()
		return p, nil
	}
	err = filepath.WalkDir(root, func(abs string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, abs)
		if err != nil {
			return err
		}
		name := path.Join(base, filepath.ToSlash(rel))
		info, err := os.Stat(abs) // follows file symlinks: the archive holds their content
		if err != nil {
			return err
		}
		switch {
		case d.Type()&fs.ModeSymlink != 0 && info.IsDir():
			return fmt.Errorf("%s is a symlink to a folder, which a model cannot hold (copy the folder instead)", abs)
		case info.IsDir(), info.Mode().IsRegular():
		default:
			return fmt.Errorf("%s is not a regular file or folder", abs)
		}
		p.sources = append(p.sources, source{rel: name, abs: abs, info: info})
		if info.Mode().IsRegular() {
			p.Size += info.Size()
		}
		return nil
	})
	if err != nil {
		return nil, errdefs.Invalid("model path %s: %v", root, err)
	}
	sort.Slice(p.sources, func(i, j int) bool { return p.sources[i].rel < p.sources[j].rel })
	return p, nil
}

// Write streams the plan as a tar with fixed times, owners and modes, so equal content gives equal bytes.
func (p *Plan) Write(w io.Writer) error {
	tw := tar.NewWriter(w)
	for _, s := range p.sources {
		hdr := &tar.Header{Name: s.rel, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
		if s.info.IsDir() {
			hdr.Typeflag, hdr.Name, hdr.Mode = tar.TypeDir, s.rel+"/", 0o755
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
			continue
		}
		hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeReg, s.info.Size(), 0o644
		if s.info.Mode()&0o111 != 0 {
			hdr.Mode = 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := os.Open(s.abs)
		if err != nil {
			return err
		}
		n, err := io.Copy(tw, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("read %s: %w", s.abs, err)
		}
		if n != s.info.Size() {
			return fmt.Errorf("%s changed size while being read", s.abs)
		}
	}
	return tw.Close()
}

// CheckName refuses archive names that could escape the folder they are unpacked in.
func CheckName(name string) (string, error) {
	clean := strings.TrimSuffix(name, "/")
	if clean == "" || strings.HasPrefix(clean, "/") || strings.Contains(clean, "\\") ||
		path.Clean(clean) != clean || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", errdefs.Invalid("archive entry %q is not a plain relative path", name)
	}
	return clean, nil
}

// Scan reads a whole tar stream, checking every name, and returns its regular files.
func Scan(r io.Reader) ([]File, error) {
	var files []File
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, errdefs.Invalid("model archive is not a valid tar stream: %w", err)
		}
		name, err := CheckName(hdr.Name)
		if err != nil {
			return nil, err
		}
		switch hdr.Typeflag {
		case tar.TypeDir:
		case tar.TypeReg:
			files = append(files, File{Path: name, Size: hdr.Size})
		default:
			return nil, errdefs.Invalid("archive entry %q is not a regular file or folder", hdr.Name)
		}
		if _, err := io.Copy(io.Discard, tr); err != nil {
			return nil, errdefs.Invalid("model archive is truncated: %w", err)
		}
	}
	// Drain the padding after the end marker so the caller's digest covers every byte.
	if _, err := io.Copy(io.Discard, r); err != nil {
		return nil, err
	}
	if len(files) == 0 {
		return nil, errdefs.Invalid("model archive holds no files")
	}
	return files, nil
}

// Unpack extracts a tar stream into dir, refusing names that escape it and files that already exist.
func Unpack(r io.Reader, dir string) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read model archive: %w", err)
		}
		name, err := CheckName(hdr.Name)
		if err != nil {
			return err
		}
		target := filepath.Join(dir, filepath.FromSlash(name))
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o755); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
				return err
			}
			mode := os.FileMode(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return fmt.Errorf("write %s: %w", target, err)
			}
		default:
			return errdefs.Invalid("archive entry %q is not a regular file or folder", hdr.Name)
		}
	}
}
