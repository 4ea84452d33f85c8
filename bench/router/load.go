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
)

// run is one closed-loop measurement.
type run struct {
	Requests, Errors, Non200 int
	Elapsed                  time.Duration
	lat                      []time.Duration // sorted
}

func (r run) RPS() float64 { return float64(r.Requests) / r.Elapsed.Seconds() }

func (r run) P(q float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[int(float64(len(r.lat)-1)*q)]
}

// load sends total POSTs over conc keep-alive connections. It speaks raw HTTP/1.1 so the
// generator costs a few microseconds per request and leaves the cores to what is measured.
func load(addr, path string, header map[string]string, body []byte, conc, total int) run {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", path, addr, len(body))
	for k, v := range header {
		fmt.Fprintf(&b, "%s: %s\r\n", k, v)
	}
	b.WriteString("\r\n")
	b.Write(body)
	req := b.Bytes()

	var next atomic.Int64
	var mu sync.Mutex
	var res run
	var wg sync.WaitGroup
	start := time.Now()
	for range conc {
		wg.Go(func() {
			var c *conn
			lat := make([]time.Duration, 0, total/conc+1)
			errs, non200 := 0, 0
			for next.Add(1) <= int64(total) {
				if c == nil {
					var err error
					if c, err = dial(addr); err != nil {
						errs++
						continue
					}
				}
				t := time.Now()
				code, err := c.roundTrip(req)
				if err != nil {
					errs++
					c.Close()
					c = nil
					continue
				}
				lat = append(lat, time.Since(t))
				if code != 200 {
					non200++
				}
			}
			if c != nil {
				c.Close()
			}
			mu.Lock()
			res.lat = append(res.lat, lat...)
			res.Errors += errs
			res.Non200 += non200
			mu.Unlock()
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Requests = len(res.lat)
	slices.Sort(res.lat)
	return res
}

type conn struct {
	net.Conn
	br *bufio.Reader
}

func dial(addr string) (*conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	return &conn{Conn: c, br: bufio.NewReaderSize(c, 16<<10)}, nil
}

// roundTrip writes req and reads one response with a Content-Length body.
func (c *conn) roundTrip(req []byte) (int, error) {
	if _, err := c.Write(req); err != nil {
		return 0, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	if len(line) < 12 {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	code, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, err
	}
	length := -1
	for {
		h, err := c.br.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		if len(h) <= 2 {
			break
		}
		if len(h) > 16 && bytes.EqualFold(h[:15], []byte("Content-Length:")) {
			length, err = strconv.Atoi(string(bytes.TrimSpace(h[15:])))
			if err != nil {
				return 0, err
			}
		}
	}
	if length < 0 {
		return 0, fmt.Errorf("response without Content-Length")
	}
	if _, err := c.br.Discard(length); err != nil {
		return 0, err
	}
	return code, nil
}
