package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mlship/mlship/internal/errdefs"
)

var t0 = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)

func signer(t *testing.T) *TokenSigner {
	t.Helper()
	s, err := NewTokenSigner(serverKey(t))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestIssueToken(t *testing.T) {
	s := signer(t)
	tok, err := s.IssueToken("sentiment", "default", t0.Add(500*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	if tok.TokenType != "Bearer" || !tok.ExpiryOn.Equal(t0.Add(time.Hour)) || !tok.RefreshAfter.Equal(t0.Add(30*time.Minute)) {
		t.Fatalf("token = %+v", tok)
	}
	for _, at := range []time.Time{t0, t0.Add(59 * time.Minute), t0.Add(time.Hour)} {
		if err := s.VerifyToken(tok.AccessToken, "sentiment", "default", at); err != nil {
			t.Errorf("VerifyToken at %s: %v", at, err)
		}
	}
	var c tokenClaims
	if _, _, err := jwt.NewParser().ParseUnverified(tok.AccessToken, &c); err != nil {
		t.Fatal(err)
	}
	if c.Issuer != "mlship" || c.Workspace != "default" || len(c.Audience) != 1 || c.Audience[0] != "sentiment" {
		t.Errorf("claims = %+v", c)
	}
}

// forge signs claims with an arbitrary method and key, as an attacker would.
func forge(t *testing.T, m jwt.SigningMethod, key any, c tokenClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(m, c).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestVerifyTokenRejects(t *testing.T) {
	k := serverKey(t)
	s, _ := NewTokenSigner(k)
	tok, _ := s.IssueToken("sentiment", "default", t0)
	good := tok.AccessToken
	var claims tokenClaims
	if _, _, err := jwt.NewParser().ParseUnverified(good, &claims); err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(good, ".")
	other, _ := signer(t).IssueToken("sentiment", "default", t0)
	noExp := claims
	noExp.ExpiresAt = nil
	otherIssuer := claims
	otherIssuer.Issuer = "someone"

	tests := []struct {
		name, tok, service, workspace string
		at                            time.Time
		reason                        string // a word the message must contain
	}{
		{"expired", good, "sentiment", "default", t0.Add(time.Hour + time.Minute), "expired"},
		{"not yet valid", good, "sentiment", "default", t0.Add(-time.Minute), "not valid yet"},
		{"other service", good, "fraud", "default", t0, "service"},
		{"other workspace", good, "sentiment", "prod", t0, "workspace"},
		{"alg none", forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims), "sentiment", "default", t0, "signature"},
		{"alg none, empty signature", parts[0] + "." + parts[1] + ".", "sentiment", "default", t0, "signature"},
		{"HS512 with the right key", forge(t, jwt.SigningMethodHS512, s.key, claims), "sentiment", "default", t0, "signature"},
		{"HS256 with another key", other.AccessToken, "sentiment", "default", t0, "signature"},
		{"HS256 with the raw server key", forge(t, jwt.SigningMethodHS256, k, claims), "sentiment", "default", t0, "signature"},
		{"tampered payload", parts[0] + "." + retarget(t, parts[1]) + "." + parts[2], "fraud", "default", t0, "signature"},
		{"garbled payload", parts[0] + "." + parts[1] + "x." + parts[2], "sentiment", "default", t0, "well-formed"},
		{"tampered signature", parts[0] + "." + parts[1] + "." + flipLast(parts[2]), "sentiment", "default", t0, "signature"},
		{"no expiry", forge(t, jwt.SigningMethodHS256, s.key, noExp), "sentiment", "default", t0, "expiry"},
		{"other issuer", forge(t, jwt.SigningMethodHS256, s.key, otherIssuer), "sentiment", "default", t0, "issued by"},
		{"malformed", "not.a.jwt", "sentiment", "default", t0, "well-formed"},
		{"empty", "", "sentiment", "default", t0, "well-formed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.VerifyToken(tt.tok, tt.service, tt.workspace, tt.at)
			if !errors.Is(err, errdefs.ErrUnauthorized) {
				t.Fatalf("VerifyToken = %v, want ErrUnauthorized", err)
			}
			t.Log(err)
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("message %q does not give the reason (%q)", err, tt.reason)
			}
		})
	}
}

// retarget rewrites the payload's audience to another service, keeping the signature.
func retarget(t *testing.T, payload string) string {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(`"sentiment"`), []byte(`"fraud"`), 1)
	return base64.RawURLEncoding.EncodeToString(b)
}

func flipLast(s string) string {
	b := []byte(s)
	if b[len(b)-2] == 'A' {
		b[len(b)-2] = 'B'
	} else {
		b[len(b)-2] = 'A'
	}
	return string(b)
}

// The control plane and a router built from the same server key agree.
func TestTokenSignersFromSameServerKey(t *testing.T) {
	k := serverKey(t)
	a, _ := NewTokenSigner(k)
	b, _ := NewTokenSigner(k)
	tok, _ := a.IssueToken("sentiment", "default", t0)
	if err := b.VerifyToken(tok.AccessToken, "sentiment", "default", t0); err != nil {
		t.Fatal(err)
	}
}
