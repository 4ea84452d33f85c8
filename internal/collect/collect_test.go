package collect

import (
	"bufio"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mlship/mlship/internal/errdefs"
)

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) { c.mu.Lock(); defer c.mu.Unlock(); c.t = c.t.Add(d) }

// readLines parses a .jsonl file, failing on any line that is not a JSON object.
func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 4<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestLines(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{t: time.Date(2026, 11, 3, 10, 4, 5, 123456789, time.UTC)}
	c := New(dir, Options{Now: clk.Now})
	c.Collect("iris", "blue", []byte("{\n  \"data\": [[1, 2]]\n}"), []byte(`[0.25]`), 200, 1234567*time.Nanosecond)
	c.Collect("iris", "blue", []byte("not json\n\"quoted\"\t\x01"), []byte("\xff bad utf-8"), 400, 2*time.Millisecond)
	c.Collect("iris", "blue", nil, []byte(`{"error":"boom"}`), 502, time.Second)
	c.Collect("iris", "green", []byte(`3`), []byte(`"x"`), 200, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	got := readLines(t, filepath.Join(dir, "iris", "blue", "2026-11-03.jsonl"))
	want := []map[string]any{
		{"time": "2026-11-03T10:04:05.123456789Z", "service": "iris", "version": "blue", "status": 200.0, "latencyMs": 1.235,
			"input": map[string]any{"data": []any{[]any{1.0, 2.0}}}, "output": []any{0.25}},
		{"time": "2026-11-03T10:04:05.123456789Z", "service": "iris", "version": "blue", "status": 400.0, "latencyMs": 2.0,
			"input": "not json\n\"quoted\"\t\x01", "output": "\ufffd bad utf-8"},
		{"time": "2026-11-03T10:04:05.123456789Z", "service": "iris", "version": "blue", "status": 502.0, "latencyMs": 1000.0,
			"input": "", "output": map[string]any{"error": "boom"}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("lines:\n got %v\nwant %v", got, want)
	}
	if g := readLines(t, filepath.Join(dir, "iris", "green", "2026-11-03.jsonl")); len(g) != 1 || g[0]["input"] != 3.0 || g[0]["output"] != "x" {
		t.Errorf("green: %v", g)
	}
	if s := c.Stats(); s != (Stats{Written: 4}) {
		t.Errorf("stats %+v", s)
	}
	if fi, err := os.Stat(filepath.Join(dir, "iris", "blue", "2026-11-03.jsonl")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v (%v), want 0600: request bodies may be sensitive", fi.Mode(), err)
	}
}

func TestDayRollover(t *testing.T) {
	dir := t.TempDir()
	// 23:59:59 UTC, seen from a zone five hours ahead: the file day is the UTC day.
	clk := &clock{t: time.Date(2026, 11, 4, 4, 59, 59, 0, time.FixedZone("X", 5*3600))}
	c := New(dir, Options{Now: clk.Now})
	for i := range 4 {
		c.Collect("svc", "v1", []byte(strconv.Itoa(i)), nil, 200, time.Millisecond)
		if i == 1 {
			waitWritten(t, c, 2) // the writer must see day one before the clock moves
			clk.Add(2 * time.Second)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for day, inputs := range map[string][]float64{"2026-11-03": {0, 1}, "2026-11-04": {2, 3}} {
		lines := readLines(t, filepath.Join(dir, "svc", "v1", day+".jsonl"))
		var got []float64
		for _, l := range lines {
			got = append(got, l["input"].(float64))
		}
		if !reflect.DeepEqual(got, inputs) {
			t.Errorf("%s: inputs %v, want %v", day, got, inputs)
		}
	}
}

func waitWritten(t *testing.T, c *Collector, n uint64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); c.Stats().Written < n; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("writer stuck at %+v", c.Stats())
		}
	}
}

func TestSampling(t *testing.T) {
	dir := t.TempDir()
	c := New(dir, Options{SampleRate: 0.25})
	for i := 1; i <= 100; i++ {
		c.Collect("svc", "a", []byte(strconv.Itoa(i)), nil, 200, 0)
		c.Collect("svc", "b", []byte(strconv.Itoa(i)), nil, 200, 0) // interleaved: counted apart
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for _, v := range []string{"a", "b"} {
		var got []int
		for _, l := range readLines(t, filepath.Join(dir, "svc", v, time.Now().UTC().Format("2006-01-02")+".jsonl")) {
			got = append(got, int(l["input"].(float64)))
		}
		var want []int
		for i := 4; i <= 100; i += 4 {
			want = append(want, i)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("version %s kept %v, want every 4th: %v", v, got, want)
		}
	}
	if s := c.Stats(); s.Written != 50 || s.SampledOut != 150 {
		t.Errorf("stats %+v, want 50 written and 150 sampled out", s)
	}
	// A rate that is not 1/k keeps ⌊n·rate⌋ of the first n.
	c = New(t.TempDir(), Options{SampleRate: 0.3})
	for range 1000 {
		c.Collect("svc", "a", nil, nil, 200, 0)
	}
	c.Close()
	if s := c.Stats(); s.Written != 300 {
		t.Errorf("rate 0.3 of 1000: %d written", s.Written)
	}
}

func TestFullQueueDrops(t *testing.T) {
	entered, release := make(chan struct{}, 1), make(chan struct{})
	c := New(t.TempDir(), Options{QueueSize: 2, beforeWrite: func() {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
	}})
	c.Collect("svc", "v", nil, nil, 200, 0)
	<-entered // the writer holds record 1 and is blocked
	start := time.Now()
	for range 5 {
		c.Collect("svc", "v", nil, nil, 200, 0) // 2 fill the queue, 3 are dropped
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Collect blocked for %v on a full queue", d)
	}
	if s := c.Stats(); s.Dropped != 3 {
		t.Errorf("dropped %d, want 3", s.Dropped)
	}
	close(release)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Written != 3 || s.Dropped != 3 {
		t.Errorf("stats %+v, want 3 written, 3 dropped", s)
	}
}

func TestCloseFlushes(t *testing.T) {
	dir := t.TempDir()
	c := New(dir, Options{QueueSize: 10000})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				c.Collect("svc", "v"+strconv.Itoa(w%2), []byte(`{"i":`+strconv.Itoa(i)+`}`), nil, 200, 0)
			}
		}()
	}
	wg.Wait()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, v := range []string{"v0", "v1"} {
		n += len(readLines(t, filepath.Join(dir, "svc", v, time.Now().UTC().Format("2006-01-02")+".jsonl")))
	}
	if s := c.Stats(); n != 2000 || s.Written != 2000 {
		t.Errorf("%d lines on disk, stats %+v; want 2000", n, s)
	}
	c.Collect("svc", "v0", nil, nil, 200, 0)
	if s := c.Stats(); s.Dropped != 1 {
		t.Errorf("Collect after Close: dropped %d, want 1", s.Dropped)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestBadNames(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "data")
	c := New(dir, Options{})
	bad := []string{"", "..", "../x", "a/b", `a\b`, "A", "a b", "a.b", "a_b", "é", strings.Repeat("a", 65)}
	for _, n := range bad {
		c.Collect(n, "v1", []byte("x"), nil, 200, 0)
		c.Collect("svc", n, []byte("x"), nil, 200, 0)
		if err := CheckName(n); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("CheckName(%q) = %v, want ErrInvalid", n, err)
		}
	}
	for _, n := range []string{"a", "my-svc-2", "0", strings.Repeat("a", 64)} {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q): %v", n, err)
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if s := c.Stats(); s.Refused != uint64(2*len(bad)) || s.Written != 0 {
		t.Errorf("stats %+v, want %d refused", s, 2*len(bad))
	}
	var files []string
	filepath.Walk(root, func(p string, _ os.FileInfo, _ error) error { files = append(files, p); return nil })
	sort.Strings(files)
	if len(files) != 1 {
		t.Errorf("files created: %v", files)
	}
}

func TestTruncation(t *testing.T) {
	dir := t.TempDir()
	const max = 512
	c := New(dir, Options{MaxLineBytes: max})
	big := `{"data":[` + strings.Repeat("1,", 1000) + `1]}`
	ctrl := strings.Repeat("\x01", 1000) // each byte escapes to 6
	c.Collect("svc", "v", []byte(big), []byte(`{"ok":true}`), 200, 0)
	c.Collect("svc", "v", []byte(`[1]`), []byte(ctrl), 200, 0)
	c.Collect("svc", "v", []byte(strings.Repeat("é", 3000)), []byte(big), 200, 0)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "svc", "v", time.Now().UTC().Format("2006-01-02")+".jsonl")
	raw, _ := os.ReadFile(path)
	for _, l := range strings.SplitAfter(strings.TrimSuffix(string(raw), "\n"), "\n") {
		if len(l) > max {
			t.Errorf("line of %d bytes > %d", len(l), max)
		}
	}
	lines := readLines(t, path)
	if len(lines) != 3 {
		t.Fatalf("%d lines", len(lines))
	}
	l := lines[0]
	in, _ := l["input"].(string)
	if l["inputTruncated"] != true || l["inputBytes"] != float64(len(big)) || !strings.HasPrefix(big, in) || len(in) < 200 ||
		!reflect.DeepEqual(l["output"], map[string]any{"ok": true}) || l["outputTruncated"] != nil {
		t.Errorf("big input: %v", l)
	}
	l = lines[1]
	out, _ := l["output"].(string)
	if l["outputTruncated"] != true || l["outputBytes"] != 1000.0 || strings.Trim(out, "\x01") != "" || len(out) < 40 || l["input"] == nil {
		t.Errorf("escaped output: %v", l)
	}
	l = lines[2]
	in, _ = l["input"].(string)
	if l["inputTruncated"] != true || l["outputTruncated"] != true || strings.Trim(in, "é") != "" {
		t.Errorf("both cut, at character boundaries: %v", l)
	}
	if s := c.Stats(); s.Truncated != 3 || s.Written != 3 {
		t.Errorf("stats %+v", s)
	}
}

func TestWriteError(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o600)
	c := New(file, Options{}) // a file where the data directory should be
	c.Collect("svc", "v", nil, nil, 200, 0)
	if err := c.Close(); err == nil {
		t.Error("Close: want the write error")
	}
	if s := c.Stats(); s.Failed != 1 || s.Written != 0 {
		t.Errorf("stats %+v", s)
	}
}

var benchInput = []byte(`{"data": [[5.1, 3.5, 1.4, 0.2], [6.2, 3.4, 5.4, 2.3], [5.9, 3.0, 5.1, 1.8], [4.9, 3.1, 1.5, 0.1]]}`)
var benchOutput = []byte(`[0, 2, 2, 0]`)

// BenchmarkCollect is the cost Collect adds to a request (wall and calling-thread CPU time).
func BenchmarkCollect(b *testing.B) {
	c := New(b.TempDir(), Options{})
	b.ReportAllocs()
	cpuPerOp(b, func() {
		for range b.N {
			c.Collect("iris", "blue", benchInput, benchOutput, 200, time.Millisecond)
		}
	})
	c.Close()
	s := c.Stats()
	b.ReportMetric(float64(s.Dropped)/float64(b.N), "dropped/op")
}

// BenchmarkCollectLatency times each call and reports the median and 99th percentile.
func BenchmarkCollectLatency(b *testing.B) {
	c := New(b.TempDir(), Options{})
	lat := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		t0 := time.Now()
		c.Collect("iris", "blue", benchInput, benchOutput, 200, time.Millisecond)
		lat[i] = time.Since(t0)
	}
	b.StopTimer()
	c.Close()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2]), "p50-ns")
	b.ReportMetric(float64(lat[len(lat)*99/100]), "p99-ns")
}

// BenchmarkWriter is the writer's sustained cost per line (encode and append to the file):
// the request rate above which a Collector starts dropping.
func BenchmarkWriter(b *testing.B) {
	c := New(b.TempDir(), Options{QueueSize: 1024})
	for range b.N {
		for len(c.queue) > 1000 {
			time.Sleep(10 * time.Microsecond)
		}
		c.Collect("iris", "blue", benchInput, benchOutput, 200, time.Millisecond)
	}
	c.Close()
	if s := c.Stats(); s.Dropped != 0 {
		b.Fatalf("dropped %d", s.Dropped)
	}
}
