package naming

import (
	"errors"
	"strings"
	"testing"

	"github.com/mlship/mlship/internal/errdefs"
)

func TestNames(t *testing.T) {
	cases := []struct {
		check func(string) error
		good  []string
		bad   []string
	}{
		{Model, []string{"m", "My.Model_2-x", strings.Repeat("a", 255)}, []string{"", ".hidden", "-x", "a b", "a/b", strings.Repeat("a", 256)}},
		{Workspace, []string{"default", "team_a-1"}, []string{"ab", "-abc", "a b c", strings.Repeat("a", 34)}},
		{Service, []string{"abc", "my-svc-2", strings.Repeat("a", 32)}, []string{"ab", "Abc", "1abc", "abc-", "a_bc", strings.Repeat("a", 33)}},
	}
	for _, c := range cases {
		for _, n := range c.good {
			if err := c.check(n); err != nil {
				t.Errorf("%q rejected: %v", n, err)
			}
		}
		for _, n := range c.bad {
			if err := c.check(n); !errors.Is(err, errdefs.ErrInvalid) {
				t.Errorf("%q accepted (err %v)", n, err)
			}
		}
	}
}

func TestTags(t *testing.T) {
	if err := Tags("tag", map[string]string{"k": "v"}); err != nil {
		t.Fatal(err)
	}
	many := map[string]string{}
	for i := 0; i < MaxTags+1; i++ {
		many[strings.Repeat("k", i+1)] = "v"
	}
	for name, m := range map[string]map[string]string{
		"empty key":    {"": "v"},
		"long key":     {strings.Repeat("k", MaxTagKeyLen+1): "v"},
		"long value":   {"k": strings.Repeat("v", MaxTagValueLen+1)},
		"control char": {"k": "a\x00b"},
		"too many":     many,
	} {
		if err := Tags("tag", m); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s accepted", name)
		}
	}
}
