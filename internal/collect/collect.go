// Package collect appends the inputs and outputs of scoring requests as JSON lines, one file per service, version and UTC day, without ever blocking a request.
package collect

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
)

// Options configure a Collector. Zero values take the defaults.
type Options struct {
	// SampleRate is the share of requests kept, in (0, 1]; default (and anything out of range) 1.
	// Sampling counts requests per service/version and keeps request n when ⌊n·rate⌋ grows:
	// 0.25 keeps exactly every 4th. A counter, not a random draw, so the kept share is exact over
	// any stretch of traffic, tests are reproducible and the hot path shares no RNG.
	SampleRate   float64
	QueueSize    int              // records waiting for the writer; default 4096, then drop
	MaxLineBytes int              // longest line written; default 1 MiB, bodies beyond it are cut and marked
	Now          func() time.Time // clock; default time.Now

	beforeWrite func() // test hook: runs in the writer before each record
}

// Stats count what happened to collected requests.
type Stats struct {
	Written    uint64 // lines written
	Dropped    uint64 // queue full or collector closed
	SampledOut uint64 // skipped by the sample rate
	Refused    uint64 // invalid service or version name
	Truncated  uint64 // lines whose bodies were cut to MaxLineBytes
	Failed     uint64 // lines lost to file errors
}

// Collector queues records from the request path and appends them from one writer goroutine.
type Collector struct {
	dir  string
	opts Options

	mu     sync.RWMutex // Collect holds it shared while sending, Close exclusively to close the queue
	closed bool
	queue  chan *record
	done   chan struct{}
	err    error // first file error, returned by Close

	counters atomic.Pointer[map[key]*atomic.Uint64] // copy-on-write sampling counters
	cmu      sync.Mutex

	written, dropped, sampledOut, refused, truncated, failed atomic.Uint64

	inBuf, outBuf []byte // the writer's scratch space for encoded bodies
}

type key struct{ service, version string }

// record is one request on its way to disk; records are pooled so Collect does not allocate
// in steady state.
type record struct {
	t                time.Time
	service, version string
	status           int
	latency          time.Duration
	in, out          []byte
	inLen, outLen    int // the bodies' sizes before any cut
}

var records = sync.Pool{New: func() any { return new(record) }}

// New starts a Collector writing under dir. Directories and files are created on first write.
func New(dir string, opts Options) *Collector {
	if !(opts.SampleRate > 0 && opts.SampleRate <= 1) {
		opts.SampleRate = 1
	}
	if opts.QueueSize <= 0 {
		opts.QueueSize = 4096
	}
	if opts.MaxLineBytes <= 0 {
		opts.MaxLineBytes = 1 << 20
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	c := &Collector{dir: dir, opts: opts, queue: make(chan *record, opts.QueueSize), done: make(chan struct{})}
	c.counters.Store(&map[key]*atomic.Uint64{})
	go c.run()
	return c
}

// CheckName reports whether a service or version name is safe as a directory name: 1-64 of
// [a-z0-9-]. Collect refuses (and counts) records with other names.
func CheckName(name string) error {
	if !validName(name) {
		return errdefs.Invalid("name %q cannot be a data collection directory: use 1-64 lowercase letters, digits and '-'", name)
	}
	return nil
}

func validName(name string) bool {
	if len(name) == 0 || len(name) > 64 {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// Collect queues one request's input and output. It never blocks: when the queue is full the
// record is dropped and counted. It copies the bodies (at most MaxLineBytes of each), so the
// caller may reuse them on return.
func (c *Collector) Collect(service, version string, input, output []byte, status int, latency time.Duration) {
	if !validName(service) || !validName(version) {
		c.refused.Add(1)
		return
	}
	if c.opts.SampleRate < 1 && !c.sampled(service, version) {
		c.sampledOut.Add(1)
		return
	}
	r := records.Get().(*record)
	r.t, r.service, r.version, r.status, r.latency = c.opts.Now(), service, version, status, latency
	r.inLen, r.outLen = len(input), len(output)
	r.in = append(r.in[:0], input[:min(len(input), c.opts.MaxLineBytes)]...)
	r.out = append(r.out[:0], output[:min(len(output), c.opts.MaxLineBytes)]...)
	c.mu.RLock()
	sent := false
	if !c.closed {
		select {
		case c.queue <- r:
			sent = true
		default:
		}
	}
	c.mu.RUnlock()
	if !sent {
		c.dropped.Add(1)
		records.Put(r)
	}
}

func (c *Collector) sampled(service, version string) bool {
	k := key{service, version}
	n := (*c.counters.Load())[k]
	if n == nil {
		c.cmu.Lock()
		old := *c.counters.Load()
		if n = old[k]; n == nil {
			m := make(map[key]*atomic.Uint64, len(old)+1)
			for k, v := range old {
				m[k] = v
			}
			n = new(atomic.Uint64)
			m[k] = n
			c.counters.Store(&m)
		}
		c.cmu.Unlock()
	}
	i := n.Add(1)
	rate := c.opts.SampleRate
	return uint64(float64(i)*rate) > uint64(float64(i-1)*rate)
}

// Stats returns the counters so far.
func (c *Collector) Stats() Stats {
	return Stats{
		Written: c.written.Load(), Dropped: c.dropped.Load(), SampledOut: c.sampledOut.Load(),
		Refused: c.refused.Load(), Truncated: c.truncated.Load(), Failed: c.failed.Load(),
	}
}

// Close stops accepting records, writes those queued, fsyncs and closes the files. It returns
// the first file error the writer met. Later calls return the same.
func (c *Collector) Close() error {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		close(c.queue)
	}
	c.mu.Unlock()
	<-c.done
	return c.err
}
