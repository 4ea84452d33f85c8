package scoring

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// errQueueTimeout is a request that waited maxQueueWait for a slot without getting one (503).
var errQueueTimeout = errors.New("request waited too long in the queue")

// limiter admits at most cap(slots) requests; others wait up to wait, as Azure's per-container limits do.
type limiter struct {
	slots    chan struct{}
	wait     time.Duration
	queued   atomic.Int64
	inFlight atomic.Int64
}

func newLimiter(maxConcurrent int, wait time.Duration) *limiter {
	return &limiter{slots: make(chan struct{}, maxConcurrent), wait: wait}
}

func (l *limiter) acquire(ctx context.Context) error {
	select {
	case l.slots <- struct{}{}:
		l.inFlight.Add(1)
		return nil
	default:
	}
	if l.wait < 0 {
		return errQueueTimeout
	}
	l.queued.Add(1)
	defer l.queued.Add(-1)
	t := time.NewTimer(l.wait)
	defer t.Stop()
	select {
	case l.slots <- struct{}{}:
		l.inFlight.Add(1)
		return nil
	case <-t.C:
		return errQueueTimeout
	case <-ctx.Done():
		return ctx.Err()
	}
}

// alone reports whether the caller's request is the only one admitted or queued.
func (l *limiter) alone() bool { return l.inFlight.Load()+l.queued.Load() == 1 }

func (l *limiter) release() {
	l.inFlight.Add(-1)
	<-l.slots
}
