package auth

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ServerKeySize is the length of the server key, the one secret from which the sealing
// key and the access-token signing key are derived.
const ServerKeySize = 32

// ErrUnsealable is returned by Open for sealed text that was altered, truncated, or
// sealed under another server key.
var ErrUnsealable = errors.New("sealed value cannot be opened: it was altered or sealed under another server key")

// NewKey returns a service key (primaryKey/secondaryKey): 32 random bytes in unpadded
// base64url, 43 characters that need no escaping in a header, URL, shell or JSON.
func NewKey() (string, error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("new service key: %w", err)
	}
	return base64.RawURLEncoding.EncodeToString(b[:]), nil
}

// KeyMatches reports whether presented equals one of keys, in time that depends only on
// the number of keys: every key is compared, digests make the comparison length-blind,
// and empty keys (unset) never match.
func KeyMatches(presented string, keys ...string) bool {
	if presented == "" {
		return false
	}
	p := sha256.Sum256([]byte(presented))
	match := 0
	for _, k := range keys {
		if k == "" {
			continue // an unset key; whether a key is set is configuration, not a secret
		}
		d := sha256.Sum256([]byte(k))
		match |= subtle.ConstantTimeCompare(p[:], d[:])
	}
	return match == 1
}

// NewServerKey returns a fresh random server key.
func NewServerKey() ([]byte, error) {
	k := make([]byte, ServerKeySize)
	if _, err := rand.Read(k); err != nil {
		return nil, fmt.Errorf("new server key: %w", err)
	}
	return k, nil
}

// LoadOrCreateServerKey reads the server key at path (base64 text), or creates it with
// mode 0600 if absent. Creation is atomic: the key is written to a temporary file and
// linked into place, so a reader never sees a partial key and two servers racing to
// create it end up using the same one.
func LoadOrCreateServerKey(path string) ([]byte, error) {
	k, err := readServerKey(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = NewServerKey()
	if err != nil {
		return nil, err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, ".server-key-*") // CreateTemp uses mode 0600
	if err != nil {
		return nil, fmt.Errorf("create server key: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(base64.StdEncoding.EncodeToString(k) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write server key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readServerKey(path) // another process won the race; use its key
		}
		return nil, fmt.Errorf("create server key %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // make the new name durable; failure here does not lose the key we return
		d.Close()
	}
	return k, nil
}

func readServerKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read server key: %w", err)
	}
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(k) != ServerKeySize {
		return nil, fmt.Errorf("server key %s is not %d base64-encoded bytes: restore it from a backup "+
			"(replacing it makes every stored service key unreadable)", path, ServerKeySize)
	}
	return k, nil
}

// deriveKey derives a purpose-specific key from the server key with HKDF-SHA256, so the
// sealing key and the token-signing key are independent: neither can be used as the other.
func deriveKey(serverKey []byte, purpose string) ([]byte, error) {
	if len(serverKey) != ServerKeySize {
		return nil, fmt.Errorf("server key is %d bytes, want %d", len(serverKey), ServerKeySize)
	}
	return hkdf.Key(sha256.New, serverKey, nil, "mlship "+purpose, 32)
}

// sealPrefix marks the format, so a later format (or key rotation) can be told apart.
const sealPrefix = "v1."

// sealAD binds sealed values to their use: a value sealed for something else does not open.
var sealAD = []byte("mlship service key")

// Sealer encrypts service keys for storage with AES-256-GCM under a key derived from the
// server key, so a copy of the database alone does not reveal them. Keys are encrypted,
// not hashed, because the router compares plaintexts and `get-keys` returns them.
type Sealer struct {
	aead cipher.AEAD
}

// NewSealer returns a Sealer for the server key.
func NewSealer(serverKey []byte) (*Sealer, error) {
	k, err := deriveKey(serverKey, "seal v1")
	if err != nil {
		return nil, fmt.Errorf("new sealer: %w", err)
	}
	block, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Sealer{aead: aead}, nil
}

// Seal encrypts plaintext under a fresh random nonce and returns printable text.
func (s *Sealer) Seal(plaintext string) (string, error) {
	nonce := make([]byte, s.aead.NonceSize(), s.aead.NonceSize()+len(plaintext)+s.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	out := s.aead.Seal(nonce, nonce, []byte(plaintext), sealAD)
	return sealPrefix + base64.RawURLEncoding.EncodeToString(out), nil
}

// Open decrypts text made by Seal; any alteration, or another server key, gives ErrUnsealable.
func (s *Sealer) Open(sealed string) (string, error) {
	body, ok := strings.CutPrefix(sealed, sealPrefix)
	if !ok {
		return "", fmt.Errorf("open sealed key: unknown format: %w", ErrUnsealable)
	}
	b, err := base64.RawURLEncoding.DecodeString(body)
	if err != nil || len(b) < s.aead.NonceSize()+s.aead.Overhead() {
		return "", fmt.Errorf("open sealed key: malformed: %w", ErrUnsealable)
	}
	n := s.aead.NonceSize()
	pt, err := s.aead.Open(nil, b[:n], b[n:], sealAD)
	if err != nil {
		return "", fmt.Errorf("open sealed key: %w", ErrUnsealable)
	}
	return string(pt), nil
}
