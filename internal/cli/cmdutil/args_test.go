package cmdutil

import (
	"errors"
	"testing"
)

func TestParseModelID(t *testing.T) {
	name, v, err := ParseModelID("my.model-1:12")
	if err != nil || name != "my.model-1" || v != 12 {
		t.Fatalf("ParseModelID = %q, %d, %v", name, v, err)
	}
	for _, bad := range []string{"", "m", "m:", ":1", "m:0", "m:-1", "m:x"} {
		var fe *FlagError
		if _, _, err := ParseModelID(bad); !errors.As(err, &fe) {
			t.Errorf("ParseModelID(%q) = %v, want a FlagError", bad, err)
		}
	}
}

func TestParseKeyValues(t *testing.T) {
	m, err := ParseKeyValues("--tag", []string{"a=1", "b=x=y", "c="}, false)
	if err != nil || m["a"] != "1" || m["b"] != "x=y" || m["c"] != "" || len(m) != 3 {
		t.Fatalf("ParseKeyValues = %v, %v", m, err)
	}
	if _, err := ParseKeyValues("--tag", []string{"novalue"}, false); err == nil {
		t.Fatal("bare key accepted where key=value is required")
	}
	if m, err := ParseKeyValues("--tag", []string{"stage"}, true); err != nil || len(m) != 1 {
		t.Fatalf("bare key for a filter = %v, %v", m, err)
	}
	if _, err := ParseKeyValues("--tag", []string{"=v"}, true); err == nil {
		t.Fatal("empty key accepted")
	}
}
