// Package auth issues and checks the secrets mlship uses: control-plane tokens, service keys and access tokens.
package auth
