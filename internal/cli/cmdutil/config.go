package cmdutil

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// Config is the CLI's own file: where the server is and the token to reach it.
type Config struct {
	Server string `json:"server"`
	Token  string `json:"token"`
}

// ConfigPath is $MLSHIP_CONFIG, else $XDG_CONFIG_HOME/mlship/config.json, else ~/.config/mlship/config.json.
func ConfigPath() (string, error) {
	if p := os.Getenv("MLSHIP_CONFIG"); p != "" {
		return p, nil
	}
	dir := os.Getenv("XDG_CONFIG_HOME")
	if dir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return "", fmt.Errorf("locate CLI config: %w (set MLSHIP_CONFIG)", err)
		}
		dir = filepath.Join(home, ".config")
	}
	return filepath.Join(dir, "mlship", "config.json"), nil
}

// LoadConfig reads the CLI config; a missing file is an empty config.
func LoadConfig() (Config, error) {
	var c Config
	p, err := ConfigPath()
	if err != nil {
		return c, err
	}
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read CLI config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("CLI config %s is not valid JSON: %w (fix or delete it, then run 'mlship login')", p, err)
	}
	return c, nil
}

// SaveConfig writes the CLI config readable by its owner only, atomically.
func SaveConfig(c Config) (string, error) {
	p, err := ConfigPath()
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("write CLI config: %w", err)
	}
	b, _ := json.MarshalIndent(c, "", "  ")
	tmp, err := os.CreateTemp(filepath.Dir(p), ".config-*.json")
	if err != nil {
		return "", fmt.Errorf("write CLI config: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write CLI config: %w", err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return "", fmt.Errorf("write CLI config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("write CLI config: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return "", fmt.Errorf("write CLI config: %w", err)
	}
	return p, nil
}
