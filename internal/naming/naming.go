// Package naming holds the rules for names, tags and properties, shared by the CLI (to fail before uploading) and the server.
package naming

import (
	"regexp"
	"unicode"

	"github.com/mlship/mlship/internal/errdefs"
)

var (
	modelRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)
	workspaceRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{2,32}$`)
	serviceRE   = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)
)

// Limits on tags and properties.
const (
	MaxTags        = 50
	MaxTagKeyLen   = 256
	MaxTagValueLen = 1024
	MaxDescription = 4096
)

// Model checks Azure ML's rule for model names.
func Model(name string) error {
	if !modelRE.MatchString(name) {
		return errdefs.Invalid("invalid model name %q: use 1-255 letters, digits, '-', '.' or '_', starting with a letter or digit", name)
	}
	return nil
}

// Workspace checks the workspace name rule.
func Workspace(name string) error {
	if !workspaceRE.MatchString(name) {
		return errdefs.Invalid("invalid workspace name %q: use 3-33 letters, digits, '-' or '_', starting with a letter or digit", name)
	}
	return nil
}

// Description checks a description's length.
func Description(s string) error {
	if len(s) > MaxDescription {
		return errdefs.Invalid("description is %d characters, over the limit of %d", len(s), MaxDescription)
	}
	return nil
}

// Tags checks tags or properties (kind says which, for the message).
func Tags(kind string, m map[string]string) error {
	if len(m) > MaxTags {
		return errdefs.Invalid("%d %ss given, the limit is %d", len(m), kind, MaxTags)
	}
	for k, v := range m {
		switch {
		case k == "":
			return errdefs.Invalid("%s with an empty key: write %ss as key=value", kind, kind)
		case len(k) > MaxTagKeyLen:
			return errdefs.Invalid("%s key %.20q... is %d characters, over the limit of %d", kind, k, len(k), MaxTagKeyLen)
		case len(v) > MaxTagValueLen:
			return errdefs.Invalid("%s %q has a value of %d characters, over the limit of %d", kind, k, len(v), MaxTagValueLen)
		case hasControl(k) || hasControl(v):
			return errdefs.Invalid("%s %q contains control characters", kind, k)
		}
	}
	return nil
}

func hasControl(s string) bool {
	for _, r := range s {
		if unicode.IsControl(r) {
			return true
		}
	}
	return false
}

// Service checks Azure ML's rule for web service (and endpoint version) names.
func Service(name string) error {
	if len(name) < 3 || len(name) > 32 || !serviceRE.MatchString(name) {
		return errdefs.Invalid("invalid service name %q: use 3-32 lowercase letters, digits and '-', starting with a letter and not ending with '-'", name)
	}
	return nil
}
