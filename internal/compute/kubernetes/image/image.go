// Package image builds and pushes the OCI image a Kubernetes replica runs, without Docker.
package image

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/errdefs"
)

// Where things go in the image (Azure ML's layout).
const (
	AppDir          = "/var/azureml-app"
	SourceDir       = AppDir + "/source"
	ModelsDir       = AppDir + "/azureml-models"
	BinaryPath      = "/mlship"
	Port            = 5001
	DefaultPlatform = "linux/amd64"

	// LayerAnnotation on each layer mlship adds says what it holds ("binary", "source", "model NAME:VERSION").
	LayerAnnotation = "org.mlship.layer"
	// InputsLabel holds the full content hash the tag is cut from.
	InputsLabel = "org.mlship.inputs"

	// format is part of the content hash: bump it when the layout or config changes.
	format = "mlship-image/1"
)

// Model is one registered model version, placed at ModelsDir/NAME/VERSION/.
type Model struct {
	Name, Version string
	// SHA256 is the hex sha256 of the archive stream (the model registry's sha256); it names the
	// model in the tag, so the archive is checked against it while it is read.
	SHA256 string
	// Open returns the model's tar stream (names start with the model's base name, as
	// internal/archive writes them). It is called once to hash and once per upload.
	Open func() (io.ReadCloser, error)
}

// Source is the entry script's folder, placed at SourceDir. Set Dir or Open, not both.
type Source struct {
	Dir string
	// Open returns a tar stream with names relative to the source folder; called more than once.
	Open func() (io.ReadCloser, error)
}

// Input is what goes into the image.
type Input struct {
	Base        string // base image reference
	Binary      string // path of a static mlship binary, placed at /mlship (mode 0755)
	Source      Source // optional (no-code models have none)
	EntryScript string // relative to the source folder; becomes a default argument
	Models      []Model
	Env         map[string]string
	Platform    string // os/arch[/variant], default linux/amd64
}

// Options say where the image goes.
type Options struct {
	Registry   string // host:port[/prefix]
	Repository string
	Insecure   bool // plain HTTP (loopback registries are plain HTTP anyway)
	// Auth is used for Registry; Keychain for any other registry (the base's). Both default to anonymous.
	Auth      authn.Authenticator
	Keychain  authn.Keychain
	Transport http.RoundTripper // default remote.DefaultTransport
	TempDir   string            // where the binary and source layers are spooled, default os.TempDir()
	Logger    *slog.Logger
	// RetryBackoff overrides the registry client's retry backoff (tests shorten it).
	RetryBackoff *remote.Backoff
}

// LayerInfo describes one layer of the image.
type LayerInfo struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	What   string `json:"what"` // "base", "binary", "source" or "model NAME:VERSION"
}

// Result is the pushed image.
type Result struct {
	Ref    string      `json:"ref"` // registry/repository:tag
	Digest string      `json:"digest"`
	Reused bool        `json:"reused"` // the tag existed; nothing was built or pushed
	Layers []LayerInfo `json:"layers"`
}

// Pinned returns the reference by digest (registry/repository@sha256:...), for pod specs.
func (r Result) Pinned() string {
	if i := strings.LastIndex(r.Ref, ":"); i > strings.LastIndex(r.Ref, "/") {
		return r.Ref[:i] + "@" + r.Digest
	}
	return r.Ref + "@" + r.Digest
}

var segment = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Build makes the image for in and pushes it to opts.Registry under a tag that is a hash of its
// content. When that tag already exists, it returns it with Reused set and builds nothing.
func Build(ctx context.Context, in Input, opts Options) (Result, error) {
	start := time.Now()
	b, err := newBuilder(ctx, in, opts)
	if err != nil {
		return Result{}, err
	}
	defer b.cleanup()

	base, err := b.pullBase()
	if err != nil {
		return Result{}, err
	}
	sum, err := b.inputsHash(base)
	if err != nil {
		return Result{}, err
	}
	tag, err := name.NewTag(b.repo.String()+":"+sum[:32], b.nameOpts...)
	if err != nil {
		return Result{}, errdefs.Invalid("image tag: %v", err)
	}
	res := Result{Ref: tag.String()}

	if desc, err := remote.Get(tag, b.remoteOpts...); err == nil {
		res.Reused, res.Digest = true, desc.Digest.String()
		res.Layers = layersOf(desc.Manifest)
		b.log.Info("image reused", "ref", res.Ref, "digest", res.Digest, "took", time.Since(start))
		return res, nil
	} else if kind := classify(err); !errors.Is(kind, errdefs.ErrNotFound) {
		return Result{}, fmt.Errorf("check image %s: %w", tag, kind)
	}

	img, err := b.assemble(base, sum)
	if err != nil {
		return Result{}, err
	}
	if err := remote.Write(tag, img, b.remoteOpts...); err != nil {
		return Result{}, fmt.Errorf("push image %s: %w", tag, classify(err))
	}
	d, err := img.Digest()
	if err != nil {
		return Result{}, err
	}
	res.Digest = d.String()
	if raw, err := img.RawManifest(); err == nil {
		res.Layers = layersOf(raw)
	}
	b.log.Info("image built", "ref", res.Ref, "digest", res.Digest, "took", time.Since(start))
	return res, nil
}

type builder struct {
	ctx        context.Context
	in         Input
	opts       Options
	log        *slog.Logger
	platform   v1.Platform
	repo       name.Repository
	nameOpts   []name.Option
	remoteOpts []remote.Option

	binaryDiffID, sourceDiffID v1.Hash // set by inputsHash
	mu                         sync.Mutex
	temps                      []string
}

func newBuilder(ctx context.Context, in Input, opts Options) (*builder, error) {
	b := &builder{ctx: ctx, in: in, opts: opts, log: opts.Logger}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if in.Base == "" {
		return nil, errdefs.Invalid("image: no base image given")
	}
	if in.Binary == "" {
		return nil, errdefs.Invalid("image: no mlship binary given")
	}
	if in.Source.Dir != "" && in.Source.Open != nil {
		return nil, errdefs.Invalid("image: source is both a folder and a stream; give one")
	}
	if in.EntryScript != "" {
		if in.Source.Dir == "" && in.Source.Open == nil {
			return nil, errdefs.Invalid("image: entry script %s given without a source folder", in.EntryScript)
		}
		if _, err := archive.CheckName(in.EntryScript); err != nil {
			return nil, errdefs.Invalid("image: entry script %s is not a path inside the source folder", in.EntryScript)
		}
	}
	p := in.Platform
	if p == "" {
		p = DefaultPlatform
	}
	plat, err := v1.ParsePlatform(p)
	if err != nil || plat.OS == "" || plat.Architecture == "" {
		return nil, errdefs.Invalid("image: platform %q is not os/arch", p)
	}
	b.platform = *plat

	seen := map[string]bool{}
	for _, m := range in.Models {
		id := m.Name + ":" + m.Version
		switch {
		case !segment.MatchString(m.Name) || !segment.MatchString(m.Version):
			return nil, errdefs.Invalid("image: model %q is not a plain NAME:VERSION", id)
		case seen[id]:
			return nil, errdefs.Invalid("image: model %s given twice", id)
		case m.Open == nil:
			return nil, errdefs.Invalid("image: model %s has no archive", id)
		}
		if raw, err := hex.DecodeString(m.SHA256); err != nil || len(raw) != sha256.Size {
			return nil, errdefs.Invalid("image: model %s: sha256 %q is not 64 hex digits", id, m.SHA256)
		}
		seen[id] = true
	}
	for k := range in.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return nil, errdefs.Invalid("image: environment variable name %q", k)
		}
	}

	if opts.Registry == "" || opts.Repository == "" {
		return nil, errdefs.Invalid("image: no registry or repository configured for the target")
	}
	if opts.Insecure {
		b.nameOpts = append(b.nameOpts, name.Insecure)
	}
	b.repo, err = name.NewRepository(strings.TrimSuffix(opts.Registry, "/")+"/"+opts.Repository, b.nameOpts...)
	if err != nil {
		return nil, errdefs.Invalid("image: registry %q repository %q: %v", opts.Registry, opts.Repository, err)
	}
	tr := opts.Transport
	if tr == nil {
		tr = remote.DefaultTransport
	}
	b.remoteOpts = []remote.Option{
		remote.WithContext(ctx), remote.WithTransport(tr), remote.WithPlatform(b.platform),
		remote.WithAuthFromKeychain(b.keychain()), remote.WithUserAgent("mlship"),
	}
	if opts.RetryBackoff != nil {
		b.remoteOpts = append(b.remoteOpts, remote.WithRetryBackoff(*opts.RetryBackoff))
	}
	return b, nil
}

// keychain gives Auth to the target registry and defers to Keychain elsewhere.
func (b *builder) keychain() authn.Keychain {
	return keychainFunc(func(r authn.Resource) (authn.Authenticator, error) {
		if b.opts.Auth != nil && r.RegistryStr() == b.repo.RegistryStr() {
			return b.opts.Auth, nil
		}
		if b.opts.Keychain != nil {
			return b.opts.Keychain.Resolve(r)
		}
		return authn.Anonymous, nil
	})
}

type keychainFunc func(authn.Resource) (authn.Authenticator, error)

func (f keychainFunc) Resolve(r authn.Resource) (authn.Authenticator, error) { return f(r) }

func (b *builder) cleanup() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.temps {
		os.Remove(f)
	}
}

func (b *builder) pullBase() (v1.Image, error) {
	var nopts []name.Option
	if b.opts.Insecure {
		// Plain HTTP only for the target's own registry.
		if r, err := name.ParseReference(b.in.Base); err == nil && r.Context().RegistryStr() == b.repo.RegistryStr() {
			nopts = append(nopts, name.Insecure)
		}
	}
	ref, err := name.ParseReference(b.in.Base, nopts...)
	if err != nil {
		return nil, errdefs.Invalid("base image %q is not a valid reference: %v", b.in.Base, err)
	}
	img, err := remote.Image(ref, b.remoteOpts...)
	if err != nil {
		err = classify(err)
		switch {
		case errors.Is(err, errdefs.ErrNotFound):
			return nil, fmt.Errorf("base image %s is not in its registry (push it, or name another base in the environment): %w", ref, err)
		case errors.Is(err, errdefs.ErrUnavailable):
			return nil, fmt.Errorf("base image %s: registry %s is unreachable: %w", ref, ref.Context().RegistryStr(), err)
		}
		return nil, fmt.Errorf("base image %s: %w", ref, err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("base image %s config: %w", ref, classify(err))
	}
	if cf.Architecture != "" && (cf.OS != b.platform.OS || cf.Architecture != b.platform.Architecture) {
		return nil, errdefs.Invalid("base image %s is %s/%s, not %s", ref, cf.OS, cf.Architecture, b.platform)
	}
	return img, nil
}

// inputsHash hashes everything the image is made of: the same inputs give the same hash, hence
// the same tag. It reads the binary and source once (no compression) and the models not at all:
// their registered sha256 stands for them.
func (b *builder) inputsHash(base v1.Image) (string, error) {
	baseDigest, err := base.Digest()
	if err != nil {
		return "", fmt.Errorf("base image digest: %w", classify(err))
	}
	if err := b.checkPaths(); err != nil {
		return "", err
	}
	type model struct{ Name, Version, SHA256 string }
	doc := struct {
		Format, Base, Platform, Binary, Source, EntryScript string
		Models                                              []model
		Env                                                 [][2]string
	}{Format: format, Base: baseDigest.String(), Platform: b.platform.String(), EntryScript: b.in.EntryScript}
	var wg sync.WaitGroup
	var errs [2]error
	wg.Go(func() {
		key, cacheable := binaryKey(b.in.Binary)
		if cacheable {
			if id, ok := binaryDiffIDs.Load(key); ok {
				b.binaryDiffID = id.(v1.Hash)
				return
			}
		}
		rc, _ := b.binaryOpener()()
		b.binaryDiffID, _, errs[0] = digestOf(rc)
		if errs[0] != nil {
			errs[0] = fmt.Errorf("mlship binary %s: %w", b.in.Binary, errs[0])
		} else if cacheable {
			binaryDiffIDs.Store(key, b.binaryDiffID)
		}
	})
	if open := b.sourceOpener(); open != nil {
		wg.Go(func() {
			rc, err := open()
			if err == nil {
				b.sourceDiffID, _, err = digestOf(rc)
			}
			if err != nil {
				errs[1] = fmt.Errorf("source: %w", err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return "", err
	}
	doc.Binary, doc.Source = b.binaryDiffID.String(), b.sourceDiffID.String()
	for _, m := range b.sortedModels() {
		doc.Models = append(doc.Models, model{m.Name, m.Version, strings.ToLower(m.SHA256)})
	}
	for _, k := range sortedKeys(b.in.Env) {
		doc.Env = append(doc.Env, [2]string{k, b.in.Env[k]})
	}
	sum := sha256.Sum256(mustJSON(doc))
	return hex.EncodeToString(sum[:]), nil
}

func (b *builder) sortedModels() []Model {
	ms := slices.Clone(b.in.Models)
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Name != ms[j].Name {
			return ms[i].Name < ms[j].Name
		}
		return ms[i].Version < ms[j].Version
	})
	return ms
}

func (b *builder) checkPaths() error {
	if _, err := os.Stat(b.in.Binary); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return errdefs.NotFound("mlship binary %s does not exist (build it with CGO_ENABLED=0 go build ./cmd/mlship)", b.in.Binary)
		}
		return errdefs.Invalid("mlship binary %s: %v", b.in.Binary, err)
	}
	if d := b.in.Source.Dir; d != "" {
		info, err := os.Stat(d)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			return errdefs.NotFound("source folder %s does not exist", d)
		case err != nil:
			return errdefs.Invalid("source folder %s: %v", d, err)
		case !info.IsDir():
			return errdefs.Invalid("source folder %s is not a folder", d)
		}
	}
	return nil
}

// buildLayers compresses the binary and source layers into temporary files and hashes the
// model layers, in parallel. Model layers are not kept: the upload streams them again.
func (b *builder) buildLayers() ([]mutate.Addendum, error) {
	models := b.sortedModels()
	var (
		wg             sync.WaitGroup
		errs           = make([]error, len(models)+2)
		binary, source *spooledLayer
		layers         = make([]*streamLayer, len(models))
	)
	wg.Go(func() {
		var err error
		if binary, err = b.spool(b.binaryOpener(), b.binaryDiffID); err != nil {
			errs[0] = fmt.Errorf("binary layer from %s: %w", b.in.Binary, err)
		}
	})
	if open := b.sourceOpener(); open != nil {
		wg.Go(func() {
			var err error
			if source, err = b.spool(open, b.sourceDiffID); err != nil {
				errs[1] = fmt.Errorf("source layer: %w", err)
			}
		})
	}
	for i, m := range models {
		wg.Go(func() {
			var err error
			if layers[i], err = modelLayer(m); err != nil {
				errs[i+2] = fmt.Errorf("model %s:%s: %w", m.Name, m.Version, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	adds := []mutate.Addendum{addendum(binary, "binary")}
	if source != nil {
		adds = append(adds, addendum(source, "source"))
	}
	for i, m := range models {
		adds = append(adds, addendum(layers[i], "model "+m.Name+":"+m.Version))
	}
	return adds, nil
}

func hasKey(m map[string]string, k string) bool { _, ok := m[k]; return ok }

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs are marshalled
	}
	return b
}

// binaryDiffIDs caches the binary layer's diff ID by file identity: every image carries the same
// ~50 MB binary, and hashing it on each deploy cost a hundred concurrent deploys seconds each
// (bench/k8s). A changed binary has another size, mtime or inode; a build checks what it spools.
var binaryDiffIDs sync.Map

func binaryKey(path string) (string, bool) {
	fi, err := os.Stat(path)
	if err != nil || !fi.Mode().IsRegular() {
		return "", false
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	return fmt.Sprintf("%s\x00%d\x00%d\x00%d", path, fi.Size(), fi.ModTime().UnixNano(), ino), true
}
