package scoring

import (
	"context"
	"testing"
	"time"
)

func TestLimiterAlone(t *testing.T) {
	l := newLimiter(1, time.Minute)
	ctx := context.Background()
	if err := l.acquire(ctx); err != nil {
		t.Fatal(err)
	}
	if !l.alone() {
		t.Fatal("one admitted request and nothing queued: want alone")
	}
	// A second request waits in the queue: the first is no longer alone, so its backend must not
	// spend a core polling.
	admitted := make(chan struct{})
	go func() { l.acquire(ctx); close(admitted) }()
	for l.queued.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	if l.alone() {
		t.Fatal("a request is queued: want not alone")
	}
	l.release()
	<-admitted
	if !l.alone() {
		t.Fatal("the queued request was admitted and the first left: want alone")
	}
	l.release()
	if l.alone() {
		t.Fatal("nothing in flight: want not alone")
	}
}
