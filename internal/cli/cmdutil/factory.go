package cmdutil

import (
	"os"

	"github.com/mlship/mlship/api"
)

// DefaultServer is where the CLI looks for the control plane when nothing else says.
const DefaultServer = "http://127.0.0.1:7878"

// Globals are the flags every command takes (bound by the root command).
type Globals struct {
	Server    string
	Token     string
	Workspace string
	Output    string
}

// Factory builds what commands need, lazily, so commands that need no server never read config.
type Factory struct {
	IO      *IOStreams
	Globals *Globals
}

// New returns a factory over streams.
func New(io *IOStreams) *Factory {
	return &Factory{IO: io, Globals: &Globals{}}
}

// Endpoint resolves the server URL and token: flag, then environment, then the CLI config.
func (f *Factory) Endpoint() (server, token string, err error) {
	server, token = f.Globals.Server, f.Globals.Token
	if server == "" {
		server = os.Getenv("MLSHIP_SERVER")
	}
	if token == "" {
		token = os.Getenv("MLSHIP_TOKEN")
	}
	if server == "" || token == "" {
		c, err := LoadConfig()
		if err != nil {
			return "", "", err
		}
		if server == "" {
			server = c.Server
		}
		if token == "" && (c.Server == "" || c.Server == server) {
			token = c.Token
		}
	}
	if server == "" {
		server = DefaultServer
	}
	return server, token, nil
}

// Client returns a typed API client for the resolved server.
func (f *Factory) Client() (*api.Client, error) {
	server, token, err := f.Endpoint()
	if err != nil {
		return nil, err
	}
	return api.NewClient(server, token, nil), nil
}

// Workspace is the workspace the command acts in.
func (f *Factory) Workspace() string {
	if f.Globals.Workspace == "" {
		return "default"
	}
	return f.Globals.Workspace
}
