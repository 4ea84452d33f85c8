package auth

import (
	"errors"
	"testing"
)

func TestControlTokenRoundTrip(t *testing.T) {
	tok, err := NewControlToken()
	if err != nil {
		t.Fatal(err)
	}
	id, secret, err := ParseControlToken(tok.String())
	if err != nil {
		t.Fatalf("parse %q: %v", tok.String(), err)
	}
	if id != tok.ID || secret != tok.Secret {
		t.Fatalf("parsed (%q,%q), want (%q,%q)", id, secret, tok.ID, tok.Secret)
	}
	if !SecretMatches(secret, tok.Hash) {
		t.Fatal("secret does not match its own hash")
	}
	if SecretMatches(secret+"x", tok.Hash) {
		t.Fatal("a different secret matched")
	}
	other, _ := NewControlToken()
	if other.ID == tok.ID || other.Secret == tok.Secret {
		t.Fatal("two tokens share an id or secret")
	}
}

func TestParseControlTokenRejects(t *testing.T) {
	for _, s := range []string{"", "abc", "mls_", "mls_short_secret", "mls_0123456789abcdef", "mls_0123456789abcdef_", "xyz_0123456789abcdef_s"} {
		if _, _, err := ParseControlToken(s); !errors.Is(err, ErrMalformedToken) {
			t.Errorf("ParseControlToken(%q) = %v, want ErrMalformedToken", s, err)
		}
	}
}
