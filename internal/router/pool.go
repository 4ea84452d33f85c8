package router

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Why a request got no replica; both answer 503 with Retry-After.
var (
	errNoReplica = errors.New("no ready replica")
	errBusy      = errors.New("every replica is at its concurrency limit")
	// errGone: the version was removed while the request waited; the caller re-routes.
	errGone = errors.New("version removed")
)

// replica is one upstream. Its counters are guarded by the owning pool's mutex.
type replica struct {
	id       string
	target   *url.URL
	ready    bool
	removed  bool // no longer listed: finishes its in-flight requests, gets no new ones
	inflight int
	conns    *connPool // keep-alive connections for the fast path; nil for https replicas
}

// waiter is a queued request; the pool hands it a replica (or nil when the pool closes).
type waiter struct {
	ch chan *replica // buffered: a grant never blocks the granter
}

// pool balances one version's requests over its replicas: least outstanding requests among
// ready replicas below the per-replica cap, then a FIFO queue. The mutex is never held
// across I/O; it guards a few integers per request.
type pool struct {
	mu       sync.Mutex
	replicas []*replica
	maxConc  int
	waiters  []*waiter // FIFO; non-empty only while no replica has a free slot
	rr       int       // rotates the tie-break so equal replicas share the load
	closed   bool
	inflight int // including removed replicas still draining

	// Load integrals (request·seconds) for the autoscaler: exact averages over any window.
	last      time.Time
	busyArea  float64
	queueArea float64

	m *versionMetrics
}

func newPool(maxConc int, m *versionMetrics) *pool {
	return &pool{maxConc: maxConc, last: time.Now(), m: m}
}

// tickLocked advances the load integrals to now; call before changing inflight or waiters.
func (p *pool) tickLocked(now time.Time) {
	dt := now.Sub(p.last).Seconds()
	if dt > 0 {
		p.busyArea += float64(p.inflight) * dt
		p.queueArea += float64(len(p.waiters)) * dt
	}
	p.last = now
}

// pickLocked returns the ready replica with the fewest requests in flight and a free slot.
func (p *pool) pickLocked() *replica {
	n := len(p.replicas)
	var best *replica
	for i := range n {
		r := p.replicas[(p.rr+i)%n]
		if !r.ready || r.inflight >= p.maxConc {
			continue
		}
		if best == nil || r.inflight < best.inflight {
			best = r
			if r.inflight == 0 {
				break
			}
		}
	}
	if best != nil && n > 0 {
		p.rr = (p.rr + 1) % n
	}
	return best
}

func (p *pool) startLocked(r *replica) {
	r.inflight++
	p.inflight++
}

// acquire returns a replica slot, waiting in FIFO order at most wait for one.
func (p *pool) acquire(ctx context.Context, wait time.Duration) (*replica, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errGone
	}
	if len(p.waiters) == 0 {
		if r := p.pickLocked(); r != nil {
			p.tickLocked(time.Now())
			p.startLocked(r)
			p.mu.Unlock()
			return r, nil
		}
	}
	if wait <= 0 {
		err := p.whyLocked()
		p.mu.Unlock()
		return nil, err
	}
	w := &waiter{ch: make(chan *replica, 1)}
	p.tickLocked(time.Now())
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()

	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case r := <-w.ch:
		if r == nil {
			return nil, errGone
		}
		return r, nil
	case <-t.C:
	case <-ctx.Done():
	}
	p.mu.Lock()
	if i := slices.Index(p.waiters, w); i >= 0 {
		p.tickLocked(time.Now())
		p.waiters = slices.Delete(p.waiters, i, i+1)
		err := p.whyLocked()
		p.mu.Unlock()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	p.mu.Unlock()
	// Granted (or closed) just as we gave up: the grant is already in the channel.
	r := <-w.ch
	if r == nil {
		return nil, errGone
	}
	if ctx.Err() != nil {
		p.release(r)
		return nil, ctx.Err()
	}
	return r, nil
}

// tryAcquire takes a free slot without queueing (for mirrored copies, which never wait).
func (p *pool) tryAcquire() *replica {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.waiters) > 0 {
		return nil
	}
	r := p.pickLocked()
	if r != nil {
		p.tickLocked(time.Now())
		p.startLocked(r)
	}
	return r
}

func (p *pool) whyLocked() error {
	for _, r := range p.replicas {
		if r.ready {
			return errBusy
		}
	}
	return errNoReplica
}

// release returns r's slot and hands it (or another free slot) to the head of the queue.
func (p *pool) release(r *replica) {
	p.mu.Lock()
	p.tickLocked(time.Now())
	r.inflight--
	p.inflight--
	p.dispatchLocked()
	p.mu.Unlock()
}

// dispatchLocked grants free slots to waiters, oldest first.
func (p *pool) dispatchLocked() {
	for len(p.waiters) > 0 {
		r := p.pickLocked()
		if r == nil {
			return
		}
		p.tickLocked(time.Now())
		w := p.waiters[0]
		p.waiters[0] = nil
		p.waiters = p.waiters[1:]
		p.startLocked(r)
		w.ch <- r
	}
}

// setReplicas replaces the replica set. Replicas keep their identity (and in-flight count)
// by ID while their URL is unchanged; dropped ones drain.
func (p *pool) setReplicas(reps []Replica, urls []*url.URL, newConns func(*url.URL) *connPool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	old := make(map[string]*replica, len(p.replicas))
	for _, r := range p.replicas {
		old[r.id] = r
	}
	next := make([]*replica, 0, len(reps))
	for i, rep := range reps {
		r := old[rep.ID]
		if r != nil && *r.target == *urls[i] {
			delete(old, rep.ID)
		} else {
			r = &replica{id: rep.ID, target: urls[i], conns: newConns(urls[i])}
		}
		r.ready = rep.Ready
		next = append(next, r)
	}
	for _, r := range old {
		r.removed, r.ready = true, false
		if r.conns != nil {
			r.conns.close() // in-flight connections close as they finish
		}
	}
	p.replicas = next
	p.rr = 0
	p.dispatchLocked()
}

func (p *pool) setMaxConc(n int) {
	p.mu.Lock()
	p.maxConc = n
	p.dispatchLocked()
	p.mu.Unlock()
}

// close fails every waiter with errGone; in-flight requests finish normally.
func (p *pool) close() {
	p.mu.Lock()
	p.closed = true
	for _, r := range p.replicas {
		if r.conns != nil {
			r.conns.close()
		}
	}
	for _, w := range p.waiters {
		w.ch <- nil
	}
	p.waiters = nil
	p.mu.Unlock()
}

// ReplicaStats is one replica's exact load.
type ReplicaStats struct {
	ID       string
	Ready    bool
	InFlight int
}

// VersionStats is a version's exact load, as the autoscaler reads it.
type VersionStats struct {
	Service, Version string
	Replicas         []ReplicaStats
	ReadyReplicas    int
	// InFlight counts requests at replicas, including removed replicas still draining.
	InFlight int
	Queued   int
	// MaxConcurrent is the per-replica cap (maxConcurrentRequestsPerContainer).
	MaxConcurrent int
	// BusySeconds and QueuedSeconds integrate InFlight and Queued over time since the version
	// appeared; the difference of two samples over their At gives exact average loads.
	BusySeconds, QueuedSeconds float64
	At                         time.Time
}

func (p *pool) stats() VersionStats {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tickLocked(time.Now())
	s := VersionStats{InFlight: p.inflight, Queued: len(p.waiters), MaxConcurrent: p.maxConc,
		BusySeconds: p.busyArea, QueuedSeconds: p.queueArea, At: p.last,
		Replicas: make([]ReplicaStats, len(p.replicas))}
	for i, r := range p.replicas {
		s.Replicas[i] = ReplicaStats{ID: r.id, Ready: r.ready, InFlight: r.inflight}
		if r.ready {
			s.ReadyReplicas++
		}
	}
	return s
}
