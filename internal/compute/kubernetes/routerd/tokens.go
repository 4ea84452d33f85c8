package routerd

import (
	"bytes"
	"sync/atomic"
	"time"

	"github.com/mlship/mlship/internal/auth"
	"github.com/mlship/mlship/internal/errdefs"
)

// tokenKeys verifies access tokens with the key of the namespace's router Secret, swapped in
// whenever the Secret changes. Without a usable key every token is refused, saying why.
type tokenKeys struct {
	cur atomic.Pointer[tokenState]
}

type tokenState struct {
	key     []byte
	signer  *auth.TokenSigner // nil: refuse, with refusal as the reason
	refusal string
}

func newTokenKeys(refusal string) *tokenKeys {
	t := &tokenKeys{}
	t.cur.Store(&tokenState{refusal: refusal})
	return t
}

// VerifyToken implements router.TokenVerifier.
func (t *tokenKeys) VerifyToken(tok, service, workspace string, now time.Time) error {
	st := t.cur.Load()
	if st.signer == nil {
		return errdefs.Unauthorized("access token rejected: this router cannot verify tokens: %s", st.refusal)
	}
	return st.signer.VerifyToken(tok, service, workspace, now)
}

// set installs key; it reports whether anything changed and, for a key that cannot be used,
// the error (tokens are then refused with it).
func (t *tokenKeys) set(key []byte) (changed bool, err error) {
	if old := t.cur.Load(); old.signer != nil && bytes.Equal(old.key, key) {
		return false, nil
	}
	s, err := auth.NewTokenSignerWithKey(key)
	if err != nil {
		return t.refuse("its key is unusable (" + err.Error() + ")"), err
	}
	t.cur.Store(&tokenState{key: append([]byte(nil), key...), signer: s})
	return true, nil
}

// refuse makes every token fail with reason; it reports whether that is a change.
func (t *tokenKeys) refuse(reason string) bool {
	if old := t.cur.Load(); old.signer == nil && old.refusal == reason {
		return false
	}
	t.cur.Store(&tokenState{refusal: reason})
	return true
}
