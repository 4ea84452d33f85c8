package cli

import "strings"

// azureFlags maps az ml's multi-letter short flags to their long names; pflag only knows one-letter shorthands.
var azureFlags = map[string]string{
	"-ct": "--compute-target",
	"-ic": "--inference-config",
	"-dc": "--deployment-config",
}

// NormalizeArgs rewrites "-ct x" and "-ct=x" to their long forms so they parse as in 'az ml'.
func NormalizeArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i, a := range args {
		if a == "--" {
			return append(out, args[i:]...)
		}
		name, value, hasValue := strings.Cut(a, "=")
		if long, ok := azureFlags[name]; ok {
			if hasValue {
				a = long + "=" + value
			} else {
				a = long
			}
		}
		out = append(out, a)
	}
	return out
}
