package collect

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
)

// dayFile is the open file of one service/version for one UTC day.
type dayFile struct {
	day string
	f   *os.File
	w   *bufio.Writer
}

// run is the writer goroutine: it owns the files and the line buffer.
func (c *Collector) run() {
	defer close(c.done)
	files := map[key]*dayFile{}
	var line []byte
	for r := range c.queue {
		if c.opts.beforeWrite != nil {
			c.opts.beforeWrite()
		}
		var cut bool
		line, cut = c.encode(line[:0], r)
		if err := c.append(files, r, line); err != nil {
			c.failed.Add(1)
			c.fail(err)
		} else {
			c.written.Add(1)
			if cut {
				c.truncated.Add(1)
			}
		}
		records.Put(r)
		if len(c.queue) == 0 { // idle: hand what we have to the OS
			for _, df := range files {
				c.fail(df.w.Flush())
			}
		}
	}
	for _, df := range files {
		c.fail(df.close())
	}
}

func (c *Collector) fail(err error) {
	if err != nil && c.err == nil {
		c.err = err
	}
}

func (c *Collector) append(files map[key]*dayFile, r *record, line []byte) error {
	k := key{r.service, r.version}
	day := r.t.UTC().Format("2006-01-02")
	df := files[k]
	if df != nil && df.day != day {
		delete(files, k)
		if err := df.close(); err != nil {
			return err
		}
		df = nil
	}
	if df == nil {
		dir := filepath.Join(c.dir, r.service, r.version)
		if err := os.MkdirAll(dir, 0o700); err != nil { // request bodies may be sensitive
			return fmt.Errorf("collect: %w", err)
		}
		f, err := os.OpenFile(filepath.Join(dir, day+".jsonl"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("collect: %w", err)
		}
		df = &dayFile{day: day, f: f, w: bufio.NewWriterSize(f, 64<<10)}
		files[k] = df
	}
	if _, err := df.w.Write(line); err != nil {
		return fmt.Errorf("collect: write %s: %w", df.f.Name(), err)
	}
	return nil
}

func (df *dayFile) close() error {
	err := df.w.Flush()
	if e := df.f.Sync(); err == nil {
		err = e
	}
	if e := df.f.Close(); err == nil {
		err = e
	}
	if err != nil {
		return fmt.Errorf("collect: close %s: %w", df.f.Name(), err)
	}
	return nil
}
