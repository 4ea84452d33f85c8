package images

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"os/signal"
	"strings"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

const usage = `usage:
  images app BINARY REF                      one-layer image of a static binary (/app), pushed to REF
  images dir [-cmd C] [-env K=V]... DIR REF OUT.tar   pack DIR as one layer into a docker tarball
  images push TARBALL REF                    push a tarball's image to REF (plain HTTP registry)
  images serve ADDR BLOBDIR                  run an OCI registry on ADDR until SIGTERM
`

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// Main runs the images command with args (without the program name) and returns the exit code.
func Main(args []string, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err := run(args[0], args[1:], stderr); err != nil {
		fmt.Fprintf(stderr, "images %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func run(cmd string, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var env listFlag
	fs.Var(&env, "env", "K=V environment entry of the image (repeatable)")
	command := fs.String("cmd", "", "image command, words separated by spaces")
	if err := fs.Parse(args); err != nil {
		return err
	}
	a := fs.Args()
	need := map[string]int{"app": 2, "dir": 3, "push": 2, "serve": 2}[cmd]
	if need == 0 || len(a) != need {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("bad arguments %q", args)
	}
	switch cmd {
	case "app":
		img, err := BinaryImage(a[0])
		if err != nil {
			return err
		}
		return Push(img, a[1])
	case "dir":
		cfg := v1.Config{Env: append([]string{DefaultPath, "LANG=C.UTF-8"}, env...)}
		if *command != "" {
			cfg.Cmd = strings.Fields(*command)
		}
		layer := tmpLayerPath(a[2])
		defer os.Remove(layer)
		img, err := DirImage(a[0], layer, cfg)
		if err != nil {
			return err
		}
		return WriteTarball(img, a[1], a[2])
	case "push":
		img, err := ReadTarball(a[0])
		if err != nil {
			return err
		}
		return Push(img, a[1])
	default: // serve
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		defer stop()
		return Serve(ctx, a[0], a[1], log.New(stderr, "registry: ", log.LstdFlags))
	}
}
