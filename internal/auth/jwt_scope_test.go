package auth

import (
	"bytes"
	"testing"
	"time"
)

func TestScopedTokenKey(t *testing.T) {
	sk, _ := NewServerKey()
	a, err := ScopedTokenKey(sk, "aks1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ScopedTokenKey(sk, "aks2")
	if bytes.Equal(a, b) {
		t.Fatal("two scopes share a key")
	}
	if _, err := ScopedTokenKey(sk, ""); err == nil {
		t.Fatal("empty scope accepted")
	}
	sa, _ := NewTokenSignerWithKey(a)
	sb, _ := NewTokenSignerWithKey(b)
	global, _ := NewTokenSigner(sk)
	now := time.Now()
	tok, err := sa.IssueToken("svc", "ws", now)
	if err != nil {
		t.Fatal(err)
	}
	if err := sa.VerifyToken(tok.AccessToken, "svc", "ws", now); err != nil {
		t.Fatalf("own scope: %v", err)
	}
	if sb.VerifyToken(tok.AccessToken, "svc", "ws", now) == nil || global.VerifyToken(tok.AccessToken, "svc", "ws", now) == nil {
		t.Fatal("a token of one scope verified under another key")
	}
	if _, err := NewTokenSignerWithKey([]byte("short")); err == nil {
		t.Fatal("short key accepted")
	}
}
