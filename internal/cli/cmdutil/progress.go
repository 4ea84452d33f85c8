package cmdutil

import (
	"io"

	"github.com/schollz/progressbar/v3"
)

// Progress returns a byte progress bar on stderr, or nil when stderr is not a terminal (no bars in piped output).
func (f *Factory) Progress(total int64, desc string) (w io.Writer, done func()) {
	if !f.IO.IsStderrTTY() {
		return nil, func() {}
	}
	bar := progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(f.IO.ErrOut),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetWidth(30),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionOnCompletion(func() {}),
	)
	return bar, func() { bar.Finish() }
}
