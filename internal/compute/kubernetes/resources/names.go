package resources

import (
	"crypto/sha256"
	"encoding/hex"
	"regexp"
	"strings"

	"github.com/mlship/mlship/internal/compute"
	"github.com/mlship/mlship/internal/errdefs"
	"k8s.io/apimachinery/pkg/util/validation"
)

const (
	maxNameLen = validation.DNS1035LabelMaxLength // 63
	hashLen    = 8
)

// ReplicaName is the name of the Deployment (and Service) of key's replicas. A plain service
// keeps its own name. An endpoint version is "<service>-<version>-<hash>": the hash of the
// pair keeps "a-b"+"c" apart from "a"+"b-c" and from a plain service named "a-b-c".
func ReplicaName(key compute.Key) (string, error) {
	if err := checkKey(key); err != nil {
		return "", err
	}
	if isPlain(key) {
		return name(key.Service)
	}
	h := hash(key.Service + "\x00" + key.Version)
	return name(truncate(key.Service+"-"+key.Version, maxNameLen-hashLen-1) + "-" + h)
}

// ServiceConfigName is the name of the per-service owner ConfigMap.
func ServiceConfigName(service string) (string, error) { return name(service) }

// KeySecretName is the name of a service's key Secret.
func KeySecretName(service string) (string, error) { return name(service + "-keys") }

// name shortens s to a DNS-1035 label with a hash suffix when it is too long, and checks it.
func name(s string) (string, error) {
	if len(s) > maxNameLen {
		s = truncate(s, maxNameLen-hashLen-1) + "-" + hash(s)
	}
	if errs := validation.IsDNS1035Label(s); len(errs) > 0 {
		return "", errdefs.Invalid("kubernetes object name %q: %s", s, strings.Join(errs, "; "))
	}
	return s, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.TrimRight(s, "-")
}

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])[:hashLen]
}

func isPlain(k compute.Key) bool { return k.Version == "" || k.Version == k.Service }

func version(k compute.Key) string {
	if isPlain(k) {
		return k.Service
	}
	return k.Version
}

func checkKey(k compute.Key) error {
	if k.Service == "" {
		return errdefs.Invalid("kubernetes objects: no service name")
	}
	for _, s := range []string{k.Service, version(k)} {
		if errs := validation.IsDNS1035Label(s); len(errs) > 0 {
			return errdefs.Invalid("service or version name %q: %s", s, strings.Join(errs, "; "))
		}
	}
	return nil
}

var labelUnsafe = regexp.MustCompile(`[^A-Za-z0-9_.-]`)

// labelValue returns s if it is a valid label value, else a valid value derived from it with a
// hash suffix (workspace names may end in '-' or '_', which label values may not).
func labelValue(s string) string {
	if len(validation.IsValidLabelValue(s)) == 0 {
		return s
	}
	v := labelUnsafe.ReplaceAllString(s, "-")
	v = strings.Trim(truncate(v, validation.LabelValueMaxLength-hashLen-1), "-_.")
	if v == "" {
		return "h" + hash(s)
	}
	return v + "-" + hash(s)
}

func serviceLabels(workspace, service, component string) map[string]string {
	return map[string]string{
		LabelManagedBy: ManagedBy,
		LabelComponent: component,
		LabelWorkspace: labelValue(workspace),
		LabelService:   service,
	}
}

// replicaSelector is immutable once the Deployment exists: no generation in it.
func replicaSelector(k compute.Key) map[string]string {
	return map[string]string{
		LabelManagedBy: ManagedBy,
		LabelComponent: ComponentReplica,
		LabelService:   k.Service,
		LabelVersion:   version(k),
	}
}

func replicaLabels(k compute.Key) map[string]string {
	l := serviceLabels(k.Workspace, k.Service, ComponentReplica)
	l[LabelVersion] = version(k)
	return l
}
