package router

import (
	"net/http"
	"strings"
	"time"

	"github.com/mlship/mlship/internal/auth"
)

// authorize applies the service's auth settings to req. The message says what to do, never
// echoes what was presented.
func (st *serviceState) authorize(req *http.Request, tokens TokenVerifier, now func() time.Time) (ok bool, msg string) {
	a := &st.cfg.Auth
	if !a.KeyAuth && !a.TokenAuth {
		return true, ""
	}
	name := st.cfg.Name
	h := req.Header.Get("Authorization")
	if h == "" {
		return false, "missing Authorization header: send `Authorization: Bearer <key or token>`; " + howToGet(a, name)
	}
	const bearer = "Bearer "
	if len(h) < len(bearer) || !strings.EqualFold(h[:len(bearer)], bearer) {
		return false, "the Authorization header is not `Bearer <key or token>`"
	}
	cred := strings.TrimSpace(h[len(bearer):])
	if a.KeyAuth && auth.KeyMatches(cred, a.Keys...) {
		return true, ""
	}
	if a.TokenAuth {
		if tokens == nil {
			return false, "this router cannot verify access tokens (it holds no server key)"
		}
		err := tokens.VerifyToken(cred, name, st.cfg.Workspace, now())
		if err == nil {
			return true, ""
		}
		if !a.KeyAuth {
			return false, err.Error()
		}
	}
	return false, "the key or token is not valid for service " + name + ": " + howToGet(a, name)
}

func howToGet(a *AuthConfig, name string) string {
	if a.KeyAuth {
		return "get the keys with `mlship service get-keys -n " + name + "`"
	}
	return "get a token with `mlship service get-access-token -n " + name + "`"
}
