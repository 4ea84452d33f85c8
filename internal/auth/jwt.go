package auth

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mlship/mlship/internal/errdefs"
)

// Access tokens live an hour, like the Azure AD tokens `get-access-token` returns in Azure;
// clients are told to refresh halfway, leaving half an hour of margin.
const (
	TokenLifetime     = time.Hour
	TokenRefreshAfter = 30 * time.Minute
	tokenIssuer       = "mlship"
	// tokenLeeway absorbs clock skew between the control plane that issues and a router
	// (possibly in a cluster) that verifies.
	tokenLeeway = 30 * time.Second
)

// AccessToken is what `get-access-token` returns.
type AccessToken struct {
	AccessToken  string
	TokenType    string // always "Bearer"
	RefreshAfter time.Time
	ExpiryOn     time.Time
}

type tokenClaims struct {
	Workspace string `json:"workspace"`
	jwt.RegisteredClaims
}

// TokenSigner issues and verifies access tokens for services with token auth: HS256 JWTs
// whose audience is the service. Safe for concurrent use.
type TokenSigner struct {
	key []byte
}

// NewTokenSigner returns a signer whose key is derived (HKDF) from the server key, so the
// control plane and the routers that hold the server key agree without sharing another secret.
func NewTokenSigner(serverKey []byte) (*TokenSigner, error) {
	k, err := deriveKey(serverKey, "access token hs256 v1")
	if err != nil {
		return nil, fmt.Errorf("new token signer: %w", err)
	}
	return &TokenSigner{key: k}, nil
}

// ScopedTokenKey derives the signing key of one scope (a Kubernetes compute target's name): a
// cluster router holds only its scope's key, so a leaked cluster Secret cannot mint tokens for
// services elsewhere.
func ScopedTokenKey(serverKey []byte, scope string) ([]byte, error) {
	if scope == "" {
		return nil, errors.New("scoped token key: empty scope")
	}
	return deriveKey(serverKey, "access token hs256 v1 scope "+scope)
}

// NewTokenSignerWithKey returns a signer over a key from ScopedTokenKey (a cluster router's side).
func NewTokenSignerWithKey(key []byte) (*TokenSigner, error) {
	if len(key) < 32 {
		return nil, fmt.Errorf("token key is %d bytes, want at least 32", len(key))
	}
	return &TokenSigner{key: append([]byte(nil), key...)}, nil
}

// IssueToken returns a token for service in workspace, valid from now for TokenLifetime.
func (s *TokenSigner) IssueToken(service, workspace string, now time.Time) (AccessToken, error) {
	now = now.Truncate(time.Second) // JWT times are whole seconds
	exp := now.Add(TokenLifetime)
	claims := tokenClaims{
		Workspace: workspace,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    tokenIssuer,
			Audience:  jwt.ClaimStrings{service},
			IssuedAt:  jwt.NewNumericDate(now),
			NotBefore: jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(exp),
		},
	}
	signed, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(s.key)
	if err != nil {
		return AccessToken{}, fmt.Errorf("issue token for %s: %w", service, err)
	}
	return AccessToken{AccessToken: signed, TokenType: "Bearer", RefreshAfter: now.Add(TokenRefreshAfter), ExpiryOn: exp}, nil
}

// VerifyToken checks that tok is a valid, current token for service in workspace. Every
// failure wraps errdefs.ErrUnauthorized and says why.
func (s *TokenSigner) VerifyToken(tok, service, workspace string, now time.Time) error {
	var claims tokenClaims
	_, err := jwt.ParseWithClaims(tok, &claims, func(*jwt.Token) (any, error) { return s.key, nil },
		jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}), // refuses "none" and every other alg
		jwt.WithIssuer(tokenIssuer),
		jwt.WithAudience(service),
		jwt.WithIssuedAt(),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(tokenLeeway),
		jwt.WithTimeFunc(func() time.Time { return now }),
	)
	if err != nil {
		return errdefs.Unauthorized("access token rejected: %s", tokenReason(err, service, &claims))
	}
	if claims.Workspace != workspace {
		return errdefs.Unauthorized("access token rejected: it was issued for workspace %q, not %q: "+
			"get a token from this workspace", claims.Workspace, workspace)
	}
	return nil
}

func tokenReason(err error, service string, c *tokenClaims) string {
	renew := "get a new one with `mlship service get-access-token -n " + service + "`"
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "it is not a well-formed JWT"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		// Also a disallowed alg: jwt/v5 reports WithValidMethods failures as signature errors.
		return "its signature does not verify (altered, signed with another key, or not HS256)"
	case errors.Is(err, jwt.ErrTokenExpired):
		return fmt.Sprintf("it expired at %s: %s", c.ExpiresAt.UTC().Format(time.RFC3339), renew)
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "it is not valid yet: check that the clocks of the server and the router agree"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fmt.Sprintf("it was issued for service %q, not %q: %s", strings.Join(c.Audience, ","), service, renew)
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fmt.Sprintf("it was issued by %q, not mlship", c.Issuer)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "it lacks an expiry"
	default:
		return err.Error()
	}
}
