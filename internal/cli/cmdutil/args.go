package cmdutil

import (
	"strconv"
	"strings"
)

// ParseModelID splits "NAME:VERSION" (Azure's model id).
func ParseModelID(id string) (name string, version int, err error) {
	name, v, ok := strings.Cut(id, ":")
	if !ok || name == "" {
		return "", 0, FlagErrorf("invalid model id %q: use NAME:VERSION, e.g. mymodel:1", id)
	}
	version, err = strconv.Atoi(v)
	if err != nil || version < 1 {
		return "", 0, FlagErrorf("invalid model id %q: the version after ':' must be a number from 1", id)
	}
	return name, version, nil
}

// ParseKeyValues turns ["k=v", ...] into a map; allowBare accepts "k" alone (value "").
func ParseKeyValues(flag string, pairs []string, allowBare bool) (map[string]string, error) {
	if len(pairs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(pairs))
	for _, p := range pairs {
		k, v, ok := strings.Cut(p, "=")
		if k == "" || (!ok && !allowBare) {
			return nil, FlagErrorf("invalid %s %q: use key=value", flag, p)
		}
		m[k] = v
	}
	return m, nil
}
