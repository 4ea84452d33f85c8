package auth

import (
	"bytes"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func serverKey(t *testing.T) []byte {
	t.Helper()
	k, err := NewServerKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestNewKey(t *testing.T) {
	a, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewKey()
	if a == b {
		t.Fatal("two keys are equal")
	}
	raw, err := base64.RawURLEncoding.DecodeString(a)
	if err != nil || len(raw) != 32 || len(a) != 43 {
		t.Fatalf("key %q: %d bytes, err %v; want 32 bytes as 43 base64url chars", a, len(raw), err)
	}
}

func TestKeyMatches(t *testing.T) {
	tests := []struct {
		name      string
		presented string
		keys      []string
		want      bool
	}{
		{"primary", "pk", []string{"pk", "sk"}, true},
		{"secondary", "sk", []string{"pk", "sk"}, true},
		{"neither", "xx", []string{"pk", "sk"}, false},
		{"prefix", "p", []string{"pk", "sk"}, false},
		{"longer", "pkk", []string{"pk", "sk"}, false},
		{"empty presented", "", []string{"", "sk"}, false},
		{"empty key never matches", "", []string{""}, false},
		{"no keys", "pk", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := KeyMatches(tt.presented, tt.keys...); got != tt.want {
				t.Fatalf("KeyMatches(%q, %q) = %t", tt.presented, tt.keys, got)
			}
		})
	}
}

func TestSealRoundTrip(t *testing.T) {
	s, err := NewSealer(serverKey(t))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey()
	a, err := s.Seal(key)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := s.Seal(key)
	if a == b {
		t.Error("sealing twice gave the same text: nonce reused")
	}
	if strings.Contains(a, key) {
		t.Error("sealed text contains the plaintext")
	}
	for _, sealed := range []string{a, b} {
		got, err := s.Open(sealed)
		if err != nil || got != key {
			t.Fatalf("Open = %q, %v; want %q", got, err, key)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	k := serverKey(t)
	s, _ := NewSealer(k)
	sealed, _ := s.Seal("secret-key")
	body := strings.TrimPrefix(sealed, sealPrefix)
	raw, _ := base64.RawURLEncoding.DecodeString(body)
	flip := func(i int) string {
		b := bytes.Clone(raw)
		b[i] ^= 1
		return sealPrefix + base64.RawURLEncoding.EncodeToString(b)
	}
	other, _ := NewSealer(serverKey(t))
	tests := []struct {
		name   string
		sealer *Sealer
		sealed string
	}{
		{"flipped nonce", s, flip(0)},
		{"flipped ciphertext", s, flip(len(raw) / 2)},
		{"flipped tag", s, flip(len(raw) - 1)},
		{"truncated", s, sealPrefix + base64.RawURLEncoding.EncodeToString(raw[:len(raw)-1])},
		{"too short", s, sealPrefix + "AAAA"},
		{"not base64", s, sealPrefix + "!!!"},
		{"no prefix", s, body},
		{"unknown version", s, "v2." + body},
		{"empty", s, ""},
		{"wrong server key", other, sealed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.sealer.Open(tt.sealed)
			if !errors.Is(err, ErrUnsealable) || got != "" {
				t.Fatalf("Open = %q, %v; want ErrUnsealable", got, err)
			}
		})
	}
}

func TestNewSealerRejectsShortKey(t *testing.T) {
	if _, err := NewSealer(make([]byte, 16)); err == nil {
		t.Fatal("16-byte server key accepted")
	}
	if _, err := NewTokenSigner(nil); err == nil {
		t.Fatal("nil server key accepted")
	}
}

func TestLoadOrCreateServerKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.key")
	k1, err := LoadOrCreateServerKey(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(k1) != ServerKeySize {
		t.Fatalf("key is %d bytes", len(k1))
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if mode := fi.Mode().Perm(); mode != 0o600 {
		t.Errorf("mode = %v, want 0600", mode)
	}
	k2, err := LoadOrCreateServerKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("reload = %x, %v; want %x", k2, err, k1)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Errorf("temporary files left behind: %v", entries)
	}
}

func TestLoadOrCreateServerKeyRace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "server.key")
	keys := make([][]byte, 8)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := LoadOrCreateServerKey(path)
			if err != nil {
				t.Error(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	for _, k := range keys[1:] {
		if !bytes.Equal(k, keys[0]) {
			t.Fatalf("racing creators got different keys: %x vs %x", k, keys[0])
		}
	}
}

func TestLoadServerKeyCorrupt(t *testing.T) {
	dir := t.TempDir()
	for name, content := range map[string]string{
		"short":      base64.StdEncoding.EncodeToString(make([]byte, 16)),
		"not-base64": "not a key!",
		"empty":      "",
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(dir, name)
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadOrCreateServerKey(path); err == nil {
				t.Fatal("corrupt key file accepted")
			}
			if b, _ := os.ReadFile(path); string(b) != content {
				t.Fatal("corrupt key file was overwritten")
			}
		})
	}
}
