package router

import (
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/auth"
)

func TestKeyAuth(t *testing.T) {
	var sawAuth atomic.Bool
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawAuth.Store(true)
		}
		w.Write([]byte("ok"))
	})
	r, base := startRouter(t, Options{})
	cfg := ServiceConfig{Name: "svc", Auth: AuthConfig{KeyAuth: true, Keys: []string{"primary-1", "secondary-1"}}}
	mustSetService(t, r, cfg)
	mustSetReplicas(t, r, "svc", "svc", ready(up))

	tests := []struct {
		name   string
		header string
		want   int
	}{
		{"missing", "", 401},
		{"not bearer", "Basic cHJpbWFyeS0x", 401},
		{"wrong key", "Bearer nope", 401},
		{"empty bearer", "Bearer ", 401},
		{"primary", "Bearer primary-1", 200},
		{"secondary", "Bearer secondary-1", 200},
		{"lowercase scheme", "bearer primary-1", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := map[string]string{}
			if tt.header != "" {
				h["Authorization"] = tt.header
			}
			res := score(t, base, "svc", h)
			if res.status != tt.want {
				t.Fatalf("status = %d (%s), want %d", res.status, res.body, tt.want)
			}
			if tt.want == 401 {
				assertUnauthorized(t, res)
			}
		})
	}
	if sawAuth.Load() {
		t.Error("the Authorization header reached the replica")
	}

	// Rotation: the old primary stops working at once, the new one works, secondary unchanged.
	cfg.Auth.Keys = []string{"primary-2", "secondary-1"}
	mustSetService(t, r, cfg)
	for h, want := range map[string]int{"Bearer primary-1": 401, "Bearer primary-2": 200, "Bearer secondary-1": 200} {
		if res := score(t, base, "svc", map[string]string{"Authorization": h}); res.status != want {
			t.Errorf("after rotation %q: status %d, want %d", h, res.status, want)
		}
	}
	// Auth off: open.
	cfg.Auth = AuthConfig{}
	mustSetService(t, r, cfg)
	if res := score(t, base, "svc", nil); res.status != 200 {
		t.Errorf("auth off: status %d", res.status)
	}
}

func assertUnauthorized(t *testing.T, res result) {
	t.Helper()
	if !strings.HasPrefix(res.header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("WWW-Authenticate = %q", res.header.Get("WWW-Authenticate"))
	}
	if code, msg := errorCode(t, res); code != "Unauthorized" || msg == "" {
		t.Errorf("error = %q %q", code, msg)
	}
	for _, secret := range []string{"primary-1", "secondary-1", "nope"} {
		if strings.Contains(res.body, secret) {
			t.Errorf("401 body echoes a credential: %s", res.body)
		}
	}
}

func TestTokenAuth(t *testing.T) {
	serverKey := make([]byte, auth.ServerKeySize)
	signer, err := auth.NewTokenSigner(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	up := upstream(t, echo("ok"))
	r, base := startRouter(t, Options{Tokens: signer, Now: func() time.Time { return now }})
	mustSetService(t, r, ServiceConfig{Name: "svc", Workspace: "ws", Auth: AuthConfig{TokenAuth: true}})
	mustSetReplicas(t, r, "svc", "svc", ready(up))

	issue := func(service, ws string, at time.Time) string {
		tok, err := signer.IssueToken(service, ws, at)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	tests := []struct {
		name string
		tok  string
		want int
	}{
		{"valid", issue("svc", "ws", now.Add(-time.Minute)), 200},
		{"expired", issue("svc", "ws", now.Add(-2*time.Hour)), 401},
		{"other service", issue("other", "ws", now), 401},
		{"other workspace", issue("svc", "elsewhere", now), 401},
		{"garbage", "a.b.c", 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := score(t, base, "svc", map[string]string{"Authorization": "Bearer " + tt.tok})
			if res.status != tt.want {
				t.Fatalf("status = %d (%s), want %d", res.status, res.body, tt.want)
			}
			if tt.want == 401 {
				assertUnauthorized(t, res)
				if strings.Contains(res.body, tt.tok) {
					t.Error("401 body echoes the token")
				}
			}
		})
	}
	if res := score(t, base, "svc", nil); res.status != 401 {
		t.Errorf("no token: %d", res.status)
	}

	// A router without a verifier refuses every token.
	r2, base2 := startRouter(t, Options{})
	mustSetService(t, r2, ServiceConfig{Name: "svc", Workspace: "ws", Auth: AuthConfig{TokenAuth: true}})
	mustSetReplicas(t, r2, "svc", "svc", ready(up))
	if res := score(t, base2, "svc", map[string]string{"Authorization": "Bearer " + issue("svc", "ws", time.Now())}); res.status != 401 {
		t.Errorf("router without verifier: %d", res.status)
	}
}
