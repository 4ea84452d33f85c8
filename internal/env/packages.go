package env

import (
	"slices"
	"strings"

	"github.com/mlship/mlship/internal/config"
)

type skippedPackage struct{ spec, why string }

// condaToPip names the conda packages whose pip name differs.
var condaToPip = map[string]string{
	"pytorch":         "torch",
	"py-xgboost":      "xgboost",
	"py-lightgbm":     "lightgbm",
	"msgpack-python":  "msgpack",
	"matplotlib-base": "matplotlib",
	"pytables":        "tables",
	"tensorflow-base": "tensorflow",
	"pyqt":            "PyQt5",
}

// notPip are conda packages that are no pip package: the interpreter, pip itself, native
// libraries and toolchains. The base interpreter and the machine provide them.
var notPip = map[string]string{
	"python": "the python version is checked against the base interpreter",
	"pip":    "pip comes with the base interpreter",
}

var nativeConda = []string{
	"_libgcc_mutex", "_openmp_mutex", "blas", "bzip2", "ca-certificates", "certifi-conda",
	"cudatoolkit", "cudnn", "cuda-toolkit", "cuda-version", "intel-openmp", "ld_impl_linux-64",
	"libblas", "libcblas", "libffi", "libgcc", "libgcc-ng", "libgfortran-ng", "libgfortran5",
	"libgomp", "liblapack", "libopenblas", "libstdcxx-ng", "libuuid", "libzlib", "mkl",
	"mkl-service", "mkl_fft", "mkl_random", "ncurses", "nomkl", "openblas", "openssl", "readline",
	"sqlite", "tk", "tzdata", "xz", "zlib",
}

// requirements turns the conda dependencies into pip requirement lines, sorted and de-duplicated:
// pip entries as written, conda package specs mapped to pip (name=1.2 → name==1.2.*).
func requirements(c *config.CondaDependencies) (reqs []string, skipped []skippedPackage) {
	for _, spec := range c.CondaPackages() {
		r, why := condaRequirement(spec)
		if why != "" {
			skipped = append(skipped, skippedPackage{spec, why})
			continue
		}
		reqs = append(reqs, r)
	}
	for _, p := range c.PipPackages() {
		reqs = append(reqs, strings.Join(strings.Fields(p), " "))
	}
	slices.Sort(reqs)
	return slices.Compact(reqs), skipped
}

// condaRequirement maps one conda match spec ("conda-forge::numpy=1.24=py311_0", "numpy 1.24",
// "scikit-learn>=1.0") to a pip requirement, or says why it has none.
func condaRequirement(spec string) (req, why string) {
	s := strings.TrimSpace(spec)
	if i := strings.Index(s, "::"); i >= 0 { // channel prefix
		s = s[i+2:]
	}
	if i := strings.IndexByte(s, '['); i >= 0 { // conda selectors like [build=...]
		s = strings.TrimSpace(s[:i])
	}
	name, version := s, ""
	if i := strings.IndexAny(s, "=<>!~ "); i >= 0 {
		name, version = s[:i], strings.TrimSpace(s[i:])
	}
	key := strings.ToLower(name)
	if why, ok := notPip[key]; ok {
		return "", why
	}
	if slices.Contains(nativeConda, key) {
		return "", "a native library, not a pip package; the machine provides it"
	}
	if p, ok := condaToPip[key]; ok {
		name = p
	}
	if version == "" {
		return name, ""
	}
	if strings.ContainsAny(version[:1], "<>!~") || strings.HasPrefix(version, "==") {
		// pip syntax already; a conda build string after a second space has no pip meaning
		if f := strings.Fields(version); len(f) > 1 && !strings.ContainsAny(f[1][:1], "<>=!~,") {
			version = f[0]
		}
		return name + strings.ReplaceAll(version, " ", ""), ""
	}
	// "=1.24", "=1.24=build", " 1.24", " 1.24 build": conda's fuzzy match, 1.24.*
	version = strings.TrimLeft(version, "= ")
	if i := strings.IndexAny(version, "= "); i >= 0 {
		version = version[:i] // drop the build string
	}
	if version == "" || version == "*" {
		return name, ""
	}
	if strings.Contains(version, "|") || strings.Contains(version, ",") {
		return name + "==" + version, "" // left for pip to judge
	}
	if !strings.HasSuffix(version, "*") {
		version += ".*"
	}
	return name + "==" + version, ""
}
