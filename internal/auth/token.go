package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// Control-plane tokens look like "mls_<id>_<secret>": the id finds the stored record, the secret is
// stored only as its SHA-256, so a copy of the database does not let anyone call the API.
const tokenPrefix = "mls_"

// ErrMalformedToken is returned for a string that is not an mlship control-plane token.
var ErrMalformedToken = errors.New("malformed token")

// ControlToken is a freshly minted control-plane token.
type ControlToken struct {
	ID     string // public, stored
	Hash   []byte // SHA-256 of the secret, stored
	Secret string // shown once, never stored
}

// String is the full token the user presents.
func (t ControlToken) String() string { return tokenPrefix + t.ID + "_" + t.Secret }

// NewControlToken mints a token from 8 random id bytes and 32 random secret bytes.
func NewControlToken() (ControlToken, error) {
	var id [8]byte
	var secret [32]byte
	if _, err := rand.Read(id[:]); err != nil {
		return ControlToken{}, err
	}
	if _, err := rand.Read(secret[:]); err != nil {
		return ControlToken{}, err
	}
	s := base64.RawURLEncoding.EncodeToString(secret[:])
	return ControlToken{ID: hex.EncodeToString(id[:]), Hash: HashSecret(s), Secret: s}, nil
}

// ParseControlToken splits a presented token into its id and secret.
func ParseControlToken(tok string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(tok, tokenPrefix)
	if !ok {
		return "", "", ErrMalformedToken
	}
	id, secret, ok = strings.Cut(rest, "_")
	if !ok || len(id) != 16 || secret == "" {
		return "", "", ErrMalformedToken
	}
	return id, secret, nil
}

// HashSecret is how token secrets are stored.
func HashSecret(secret string) []byte {
	h := sha256.Sum256([]byte(secret))
	return h[:]
}

// SecretMatches compares a presented secret with a stored hash in constant time.
func SecretMatches(secret string, hash []byte) bool {
	return subtle.ConstantTimeCompare(HashSecret(secret), hash) == 1
}
