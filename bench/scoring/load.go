package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mlship/mlship/internal/scoring/rawconn"
)

// loadResult is one closed-loop run: total requests, status codes and latencies.
type loadResult struct {
	Requests int
	Errors   int
	Codes    map[int]int
	Elapsed  time.Duration
	lat      []time.Duration
	// From the answers that carried mlship's Server-Timing "run;dur=" (each sorted): the time run()
	// took in the worker, and the request's latency minus it (what serving added around run()).
	run, aroundRun []time.Duration
}

func (r loadResult) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

func (r loadResult) Percentile(p float64) time.Duration { return percentile(r.lat, p) }

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[int(float64(len(sorted)-1)*p)]
}

// load sends total POSTs with conc concurrent keep-alive connections, reconnecting when the server
// closes (gunicorn's sync workers close after every response). It speaks raw HTTP/1.1 so the
// generator costs a few microseconds per request and leaves the cores to the server under test.
//
// Its reads and writes are raw system calls (rawconn), as in mlship's replica. An ordinary Go
// socket call wakes the generator's sysmon thread whenever it finds all Ps idle, which it does
// between requests at one client; sysmon then ticks every 20 µs on the 2 cores the servers need.
// perf sched showed that thread delaying the server's wake-up by 40–60 µs on most requests
// (server p50 at one client: about 165 µs with ordinary calls, 115 µs with raw ones or wrk).
func load(addr, path string, body []byte, conc, total int) loadResult {
	req := []byte(fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", path, addr, len(body)))
	req = append(req, body...)
	var next atomic.Int64
	var mu sync.Mutex
	res := loadResult{Codes: map[int]int{}}
	start := time.Now()
	var wg sync.WaitGroup
	for c := 0; c < conc; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var conn net.Conn
			var br *bufio.Reader
			lat := make([]time.Duration, 0, total/conc+1)
			var runs, around []time.Duration
			codes := map[int]int{}
			errs := 0
			for next.Add(1) <= int64(total) {
				t := time.Now()
				code, keep, ran, err := roundTrip(&conn, &br, addr, req)
				if err != nil {
					errs++
					if conn != nil {
						conn.Close()
						conn = nil
					}
					continue
				}
				took := time.Since(t)
				lat = append(lat, took)
				if ran > 0 {
					runs, around = append(runs, ran), append(around, took-ran)
				}
				codes[code]++
				if !keep {
					conn.Close()
					conn = nil
				}
			}
			if conn != nil {
				conn.Close()
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.run, res.aroundRun = append(res.run, runs...), append(res.aroundRun, around...)
			for k, v := range codes {
				res.Codes[k] += v
			}
			res.Errors += errs
			mu.Unlock()
		}()
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Requests = len(res.lat)
	for _, d := range [][]time.Duration{res.lat, res.run, res.aroundRun} {
		slices.Sort(d)
	}
	return res
}

// roundTrip sends one request and reads its answer; ran is the run() time the answer's
// Server-Timing header gives, 0 if none.
func roundTrip(conn *net.Conn, br **bufio.Reader, addr string, req []byte) (code int, keep bool, ran time.Duration, err error) {
	if *conn == nil {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return 0, false, 0, err
		}
		*conn = rawconn.Wrap(c)
		*br = bufio.NewReaderSize(*conn, 16<<10)
	}
	if _, err := (*conn).Write(req); err != nil {
		return 0, false, 0, err
	}
	line, err := (*br).ReadSlice('\n')
	if err != nil {
		return 0, false, 0, err
	}
	if len(line) < 12 {
		return 0, false, 0, fmt.Errorf("bad status line %q", line)
	}
	code, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, false, 0, err
	}
	keep = true
	length := -1
	for {
		h, err := (*br).ReadSlice('\n')
		if err != nil {
			return 0, false, 0, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, _ := bytes.Cut(h, []byte(":"))
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			length, _ = strconv.Atoi(string(v))
		case bytes.EqualFold(k, []byte("Connection")) && bytes.EqualFold(v, []byte("close")):
			keep = false
		case bytes.EqualFold(k, []byte("Server-Timing")) && bytes.HasPrefix(v, []byte("run;dur=")):
			ms, _ := strconv.ParseFloat(string(v[len("run;dur="):]), 64)
			ran = time.Duration(ms * 1e6)
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			return 0, false, 0, fmt.Errorf("chunked responses are not supported by this load generator")
		}
	}
	if length < 0 {
		return 0, false, 0, fmt.Errorf("response without Content-Length")
	}
	if _, err := (*br).Discard(length); err != nil {
		return 0, false, 0, err
	}
	return code, keep, ran, nil
}
