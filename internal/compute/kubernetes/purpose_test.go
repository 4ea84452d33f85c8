package kubernetes

import (
	"errors"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
)

func TestCheckPurpose(t *testing.T) {
	for _, c := range []struct {
		purpose string
		vcpus   float64
		ok      bool
	}{
		{"FastProd", 12, true},
		{"FastProd", 16.5, true},
		{"FastProd", 11.9, false},
		{"FastProd", 0, false},
		{"", 8, false}, // FastProd is the default
		{"", 12, true},
		{"fastprod", 8, false},
		{"DevTest", 0, true},
		{"devtest", 2, true},
		{"Prod", 100, false},
	} {
		err := CheckPurpose(c.purpose, c.vcpus)
		if c.ok != (err == nil) {
			t.Errorf("CheckPurpose(%q, %g) = %v, want ok=%v", c.purpose, c.vcpus, err, c.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("CheckPurpose(%q, %g): %v is not ErrInvalid", c.purpose, c.vcpus, err)
		}
	}
}

func TestParsePurpose(t *testing.T) {
	for in, want := range map[string]string{"": FastProd, "FASTPROD": FastProd, "DevTest": DevTest, "devtest": DevTest} {
		if got, err := ParsePurpose(in); err != nil || got != want {
			t.Errorf("ParsePurpose(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}
