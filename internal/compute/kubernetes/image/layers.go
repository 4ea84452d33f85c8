package image

import (
	"archive/tar"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/errdefs"
)

// opener opens a tar stream; it is called once per pass (hashing, spooling, upload).
type opener func() (io.ReadCloser, error)

// relocate copies the tar stream r to w with each name under prefix after dropping its first
// strip components, and with fixed times, owners and modes, so equal input gives equal bytes.
// Parent folders are written before their contents. It returns the number of regular files.
func relocate(w io.Writer, r io.Reader, prefix string, strip int) (int, error) {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	epoch := time.Unix(0, 0)
	mkdirs := func(dir string) error {
		var missing []string
		for d := dir; d != "." && d != "/" && d != "" && !dirs[d]; d = path.Dir(d) {
			missing = append(missing, d)
		}
		for i := len(missing) - 1; i >= 0; i-- {
			dirs[missing[i]] = true
			hdr := &tar.Header{Typeflag: tar.TypeDir, Name: missing[i] + "/", Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(hdr); err != nil {
				return err
			}
		}
		return nil
	}
	if err := mkdirs(prefix); err != nil {
		return 0, err
	}
	files := 0
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return files, errdefs.Invalid("not a valid tar stream: %w", err)
		}
		name, err := archive.CheckName(hdr.Name)
		if err != nil {
			return files, err
		}
		parts := strings.SplitN(name, "/", strip+1)
		if len(parts) <= strip {
			if hdr.Typeflag == tar.TypeDir {
				continue // the stripped top folder itself
			}
			return files, errdefs.Invalid("archive entry %q is outside the folder being packed", hdr.Name)
		}
		target := path.Join(prefix, parts[strip])
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := mkdirs(target); err != nil {
				return files, err
			}
		case tar.TypeReg:
			if err := mkdirs(path.Dir(target)); err != nil {
				return files, err
			}
			mode := int64(0o644)
			if hdr.Mode&0o111 != 0 {
				mode = 0o755
			}
			out := &tar.Header{Typeflag: tar.TypeReg, Name: target, Size: hdr.Size, Mode: mode, ModTime: epoch, Format: tar.FormatPAX}
			if err := tw.WriteHeader(out); err != nil {
				return files, err
			}
			if _, err := io.Copy(tw, tr); err != nil {
				return files, fmt.Errorf("copy %s: %w", hdr.Name, err)
			}
			files++
		default:
			return files, errdefs.Invalid("archive entry %q is not a regular file or folder", hdr.Name)
		}
	}
	return files, tw.Close()
}

// binaryTar writes the tar of one executable file at name.
func binaryTar(w io.Writer, file, name string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if !info.Mode().IsRegular() {
		return errdefs.Invalid("%s is not a regular file", file)
	}
	tw := tar.NewWriter(w)
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: name, Size: info.Size(), Mode: 0o755, ModTime: time.Unix(0, 0), Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, f)
	if err != nil {
		return fmt.Errorf("read %s: %w", file, err)
	}
	if n != info.Size() {
		return fmt.Errorf("%s changed size while being read", file)
	}
	return tw.Close()
}

// pipe runs write in a goroutine and returns what it writes as a reader; closing the reader
// early stops the writer.
func pipe(write func(io.Writer) error) io.ReadCloser {
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(write(pw)) }()
	return pr
}

func newHash(h hash.Hash) v1.Hash {
	return v1.Hash{Algorithm: "sha256", Hex: hex.EncodeToString(h.Sum(nil))}
}

// countingWriter counts bytes on their way to w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// digestOf hashes a stream, returning its digest and size.
func digestOf(rc io.ReadCloser) (v1.Hash, int64, error) {
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		return v1.Hash{}, 0, err
	}
	return newHash(h), n, nil
}

// spooledLayer is a gzip layer compressed once into a temporary file, both hashes taken on the way.
// Used for the binary and the source: they compress well and are small enough to spool.
type spooledLayer struct {
	file      string
	digest    v1.Hash
	diffID    v1.Hash
	size      int64
	mediaType types.MediaType
}

func spool(dir string, open opener) (*spooledLayer, error) {
	f, err := os.CreateTemp(dir, "mlship-layer-*.tar.gz")
	if err != nil {
		return nil, fmt.Errorf("spool layer: %w", err)
	}
	l := &spooledLayer{file: f.Name()} // returned even on error, so the caller removes the file
	defer f.Close()
	compressed, uncompressed := sha256.New(), sha256.New()
	cw := &countingWriter{w: io.MultiWriter(f, compressed)}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return l, err
	}
	rc, err := open()
	if err != nil {
		return l, err
	}
	_, err = io.Copy(io.MultiWriter(zw, uncompressed), rc)
	rc.Close()
	if err != nil {
		return l, err
	}
	if err := zw.Close(); err != nil {
		return l, err
	}
	if err := f.Close(); err != nil {
		return l, err
	}
	l.digest, l.diffID, l.size = newHash(compressed), newHash(uncompressed), cw.n
	return l, nil
}

func (l *spooledLayer) Digest() (v1.Hash, error)            { return l.digest, nil }
func (l *spooledLayer) DiffID() (v1.Hash, error)            { return l.diffID, nil }
func (l *spooledLayer) Size() (int64, error)                { return l.size, nil }
func (l *spooledLayer) MediaType() (types.MediaType, error) { return l.mediaType, nil }
func (l *spooledLayer) Compressed() (io.ReadCloser, error)  { return os.Open(l.file) }

func (l *spooledLayer) Uncompressed() (io.ReadCloser, error) {
	f, err := os.Open(l.file)
	if err != nil {
		return nil, err
	}
	zr, err := gzip.NewReader(f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return struct {
		io.Reader
		io.Closer
	}{zr, f}, nil
}

// streamLayer is an uncompressed layer produced afresh from its source on every read, so a
// multi-GB model is never held in memory or copied to disk. Its digest is its DiffID.
type streamLayer struct {
	open      opener
	digest    v1.Hash
	size      int64
	mediaType types.MediaType
}

func (l *streamLayer) Digest() (v1.Hash, error)             { return l.digest, nil }
func (l *streamLayer) DiffID() (v1.Hash, error)             { return l.digest, nil }
func (l *streamLayer) Size() (int64, error)                 { return l.size, nil }
func (l *streamLayer) MediaType() (types.MediaType, error)  { return l.mediaType, nil }
func (l *streamLayer) Compressed() (io.ReadCloser, error)   { return l.open() }
func (l *streamLayer) Uncompressed() (io.ReadCloser, error) { return l.open() }

func (b *builder) binaryOpener() opener {
	return func() (io.ReadCloser, error) {
		return pipe(func(w io.Writer) error { return binaryTar(w, b.in.Binary, strings.TrimPrefix(BinaryPath, "/")) }), nil
	}
}

// spool compresses a layer into a temporary file, checking it is what inputsHash hashed.
func (b *builder) spool(open opener, want v1.Hash) (*spooledLayer, error) {
	l, err := spool(b.opts.TempDir, open)
	if l != nil {
		b.mu.Lock()
		b.temps = append(b.temps, l.file)
		b.mu.Unlock()
	}
	if err != nil {
		return nil, err
	}
	if l.diffID != want {
		return nil, errdefs.Conflict("content changed while the image was being built; build again")
	}
	return l, nil
}

func (b *builder) sourceOpener() opener {
	prefix := strings.TrimPrefix(SourceDir, "/")
	switch {
	case b.in.Source.Dir != "":
		dir := b.in.Source.Dir
		return func() (io.ReadCloser, error) {
			plan, err := archive.NewPlan(dir)
			if err != nil {
				return nil, err
			}
			// The plan's names start with the folder's own name: strip it.
			return relocated(pipe(plan.Write), prefix, 1, nil), nil
		}
	case b.in.Source.Open != nil:
		return func() (io.ReadCloser, error) {
			rc, err := b.in.Source.Open()
			if err != nil {
				return nil, err
			}
			return relocated(rc, prefix, 0, nil), nil
		}
	}
	return nil
}

// relocated streams relocate(rc) and closes rc when done; files, if not nil, gets the number of
// regular files (read it only after the stream's end).
func relocated(rc io.ReadCloser, prefix string, strip int, files *int) io.ReadCloser {
	return pipe(func(w io.Writer) error {
		defer rc.Close()
		n, err := relocate(w, rc, prefix, strip)
		if err == nil {
			// Drain the tar padding so a caller hashing rc sees every byte.
			_, err = io.Copy(io.Discard, rc)
		}
		if files != nil {
			*files = n
		}
		return err
	})
}

// modelLayer hashes the relocated model stream, checking the archive against its sha256.
func modelLayer(m Model) (*streamLayer, error) {
	prefix := path.Join(strings.TrimPrefix(ModelsDir, "/"), m.Name, m.Version)
	raw, err := m.Open()
	if err != nil {
		return nil, fmt.Errorf("open archive: %w", err)
	}
	h := sha256.New()
	files := 0
	digest, size, err := digestOf(relocated(readCloser{io.TeeReader(raw, h), raw}, prefix, 0, &files))
	if err != nil {
		return nil, err
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != strings.ToLower(m.SHA256) {
		return nil, errdefs.Invalid("archive sha256 is %s, not the registered %s", got, m.SHA256)
	}
	if files == 0 {
		return nil, errdefs.Invalid("archive holds no files")
	}
	open := func() (io.ReadCloser, error) {
		raw, err := m.Open()
		if err != nil {
			return nil, err
		}
		return relocated(raw, prefix, 0, nil), nil
	}
	return &streamLayer{open: open, digest: digest, size: size}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}
