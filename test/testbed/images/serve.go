package images

import (
	"context"
	"errors"
	"log"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/google/go-containerregistry/pkg/registry"
)

// Serve runs an OCI registry on addr until ctx ends. Blobs live in blobDir (they survive a restart);
// manifests live in memory, so whoever starts the registry pushes the images again (blobs are then skipped).
func Serve(ctx context.Context, addr, blobDir string, logger *log.Logger) error {
	if err := os.MkdirAll(blobDir, 0o755); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           registry.New(registry.WithBlobHandler(registry.NewDiskBlobHandler(blobDir)), registry.Logger(logger)),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	logger.Printf("registry listening on %s, blobs in %s", ln.Addr(), blobDir)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
