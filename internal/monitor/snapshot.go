package monitor

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
)

const snapshotFormat = 1

type snapshot struct {
	Format      int              `json:"format"`
	BucketNs    int64            `json:"bucketNs"`
	HistBounds  []int64          `json:"histBounds"` // the histogram layout; Restore refuses another one
	Reservoir   int              `json:"reservoir"`
	Versions    []snapshotSeries `json:"versions"`
	TakenAtUnix int64            `json:"takenAt"`
}

type snapshotSeries struct {
	Service string       `json:"service"`
	Version string       `json:"version"`
	Buckets []bucketData `json:"buckets"`
}

// Snapshot encodes every bucket within the retention as JSON, for the control plane to save
// across restarts.
func (r *Recorder) Snapshot() ([]byte, error) {
	now := r.now()
	last := r.bucketOf(now)
	snap := snapshot{
		Format: snapshotFormat, BucketNs: r.bucket, HistBounds: histBounds[:],
		Reservoir: ReservoirSize, TakenAtUnix: now.Unix(),
	}
	for k, s := range *r.series.Load() {
		bs := s.buckets(last-int64(r.slots)+1, last)
		if len(bs) > 0 {
			snap.Versions = append(snap.Versions, snapshotSeries{k.service, k.version, bs})
		}
	}
	b, err := json.Marshal(snap)
	if err != nil {
		return nil, fmt.Errorf("monitor snapshot: %w", err)
	}
	return b, nil
}

// Restore loads a Snapshot, dropping buckets now past the retention. Meant for a fresh
// Recorder at start-up: a restored bucket replaces the one the Recorder holds at that time.
func (r *Recorder) Restore(data []byte) error {
	var snap snapshot
	if err := json.Unmarshal(data, &snap); err != nil {
		return errdefs.Invalid("monitor restore: %v", err)
	}
	switch {
	case snap.Format != snapshotFormat:
		return errdefs.Invalid("monitor restore: snapshot format %d, want %d", snap.Format, snapshotFormat)
	case snap.BucketNs != r.bucket:
		return errdefs.Invalid("monitor restore: snapshot buckets are %v wide, this recorder's %v: restart with the same bucket width or discard the snapshot",
			time.Duration(snap.BucketNs), time.Duration(r.bucket))
	case len(snap.HistBounds) != len(histBounds) || snap.Reservoir > ReservoirSize:
		return errdefs.Invalid("monitor restore: snapshot histogram layout differs from this version's")
	}
	for i, b := range snap.HistBounds {
		if b != histBounds[i] {
			return errdefs.Invalid("monitor restore: snapshot histogram layout differs from this version's")
		}
	}
	oldest := r.bucketOf(r.now()) - int64(r.slots) + 1
	for _, v := range snap.Versions {
		s := (*r.series.Load())[seriesKey{v.Service, v.Version}]
		if s == nil {
			s = r.addSeries(v.Service, v.Version)
		}
		for _, b := range v.Buckets {
			if b.Idx < oldest || b.Count == 0 {
				continue
			}
			s.mu.Lock()
			ref := &s.ring[int(uint64(b.Idx)%uint64(len(s.ring)))]
			sl := ref.Load()
			if sl == nil {
				sl = &slot{}
				ref.Store(sl)
			}
			if sl.idx.Load() <= b.Idx {
				sl.write(b)
			}
			s.mu.Unlock()
		}
	}
	return nil
}
