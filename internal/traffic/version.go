package traffic

import (
	"fmt"
	"math"
	"regexp"

	"github.com/mlship/mlship/internal/errdefs"
)

// MaxVersions is how many versions an endpoint may hold (Azure's limit).
const MaxVersions = 6

// MaxMirrorTotal caps the sum of all versions' mirror percentiles, so mirroring at most
// adds half the endpoint's load again.
const MaxMirrorTotal = 50.0

// Float sums of shares such as 33.3+33.3+33.4 are not exact; anything within eps counts as equal.
const eps = 1e-9

var nameRE = regexp.MustCompile(`^[a-z]([-a-z0-9]*[a-z0-9])?$`)

// Type is a version's role in a controlled rollout.
type Type string

// The two version types: exactly one Control, every other version a Treatment.
const (
	Control   Type = "Control"
	Treatment Type = "Treatment"
)

// Version is one version of an endpoint as far as traffic is concerned.
type Version struct {
	Name string
	// TrafficPercentile is the share (0–100) allocated to this version; the default
	// version also receives whatever no version is allocated.
	TrafficPercentile float64
	IsDefault         bool
	IsControl         bool
	// MirrorPercentile is the share (0–100) of all requests copied to this version;
	// copies' answers are discarded.
	MirrorPercentile float64
}

// Type reports Control or Treatment.
func (v Version) Type() Type {
	if v.IsControl {
		return Control
	}
	return Treatment
}

// Patch is a change to an existing version. Nil fields are left alone; IsDefault and
// IsControl only ever move the role to this version (there is always exactly one holder,
// so a role is taken away only by giving it to another version).
type Patch struct {
	TrafficPercentile *float64
	MirrorPercentile  *float64
	IsDefault         bool
	IsControl         bool
}

// ValidateName checks a version name against the service-name rule.
func ValidateName(name string) error {
	if len(name) < 3 || len(name) > 32 || !nameRE.MatchString(name) {
		return errdefs.Invalid("version name %q is invalid: use 3-32 lowercase letters, digits and '-', "+
			"starting with a letter and not ending with '-'", name)
	}
	return nil
}

func checkPercent(field, name string, p float64) error {
	if math.IsNaN(p) || p < 0 || p > 100 {
		return errdefs.Invalid("version %q: %s %v is out of range: use a value from 0 to 100", name, field, p)
	}
	return nil
}

// Validate checks a whole set of versions: count, names, ranges, sums, and exactly one
// default and one control. Every error is ErrInvalid.
func Validate(versions []Version) error {
	if len(versions) > MaxVersions {
		return errdefs.Invalid("endpoint has %d versions; an endpoint holds at most %d", len(versions), MaxVersions)
	}
	seen := make(map[string]bool, len(versions))
	var defaults, controls int
	for _, v := range versions {
		if err := ValidateName(v.Name); err != nil {
			return err
		}
		if seen[v.Name] {
			return errdefs.Invalid("version %q appears twice: version names must be unique in an endpoint", v.Name)
		}
		seen[v.Name] = true
		if err := checkPercent("trafficPercentile", v.Name, v.TrafficPercentile); err != nil {
			return err
		}
		if err := checkPercent("mirrorPercentile", v.Name, v.MirrorPercentile); err != nil {
			return err
		}
		if v.IsDefault {
			defaults++
		}
		if v.IsControl {
			controls++
		}
	}
	if len(versions) > 0 && defaults != 1 {
		return errdefs.Invalid("endpoint has %d default versions; exactly one version must be the default", defaults)
	}
	if len(versions) > 0 && controls != 1 {
		return errdefs.Invalid("endpoint has %d control versions; exactly one version must be the control", controls)
	}
	return checkSums(versions)
}

func checkSums(versions []Version) error {
	var traffic, mirror float64
	for _, v := range versions {
		traffic += v.TrafficPercentile
		mirror += v.MirrorPercentile
	}
	if traffic > 100+eps {
		return errdefs.Invalid("trafficPercentile of all versions totals %g %%, over 100 %%: "+
			"lower another version's trafficPercentile first", round(traffic))
	}
	if mirror > MaxMirrorTotal+eps {
		return errdefs.Invalid("mirrorPercentile of all versions totals %g %%, over %g %%: "+
			"lower another version's mirrorPercentile first", round(mirror), MaxMirrorTotal)
	}
	return nil
}

func round(f float64) float64 { return math.Round(f*1e6) / 1e6 }

func index(versions []Version, name string) int {
	for i, v := range versions {
		if v.Name == name {
			return i
		}
	}
	return -1
}

func notFound(name string) error {
	return errdefs.NotFound("endpoint has no version %q: list the endpoint's versions with `mlship endpoint show`", name)
}

// Effective returns each version's actual share of requests: its own allocation, plus,
// for the default version, whatever no version is allocated. For valid versions the
// shares sum to 100 (or the map is empty).
func Effective(versions []Version) map[string]float64 {
	shares := make(map[string]float64, len(versions))
	var allocated float64
	def := ""
	for _, v := range versions {
		shares[v.Name] = v.TrafficPercentile
		allocated += v.TrafficPercentile
		if v.IsDefault {
			def = v.Name
		}
	}
	if rest := 100 - allocated; def != "" && rest > eps {
		shares[def] += rest
	}
	return shares
}

// String is for logs and test failures.
func (v Version) String() string {
	return fmt.Sprintf("%s(traffic=%g default=%t %s mirror=%g)", v.Name, v.TrafficPercentile, v.IsDefault, v.Type(), v.MirrorPercentile)
}
