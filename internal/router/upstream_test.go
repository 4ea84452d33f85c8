package router

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The fast path's HTTP/1.1 handling against the shapes of answer a replica may give; each
// case runs twice so the second request reuses (or correctly does not reuse) the connection.
func TestUpstreamAnswerShapes(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.URL.Query().Get("shape") {
		case "chunked":
			w.Header().Set("X-Shape", "chunked")
			for i := range 3 {
				fmt.Fprintf(w, "part%d;", i)
				w.(http.Flusher).Flush()
			}
		case "close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "closing")
		case "nocontent":
			w.WriteHeader(http.StatusNoContent)
		case "big":
			io.WriteString(w, strings.Repeat("b", 200<<10))
		case "early-hints":
			w.Header().Set("Link", "</style.css>; rel=preload")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "after hints")
		case "multi":
			w.Header().Add("X-Multi", "a")
			w.Header().Add("X-Multi", "b")
			io.WriteString(w, "multi")
		default:
			io.WriteString(w, "plain")
		}
	})
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{}, up)
	for _, tt := range []struct {
		shape, method string
		status        int
		body          string
	}{
		{"chunked", "POST", 200, "part0;part1;part2;"},
		{"close", "POST", 200, "closing"},
		{"nocontent", "POST", 204, ""},
		{"big", "POST", 200, strings.Repeat("b", 200<<10)},
		{"early-hints", "POST", 200, "after hints"},
		{"multi", "POST", 200, "multi"},
		{"plain", "GET", 200, "plain"},
		{"plain", "HEAD", 200, ""},
	} {
		for i := range 2 {
			res := do(t, tt.method, base+"/api/v1/service/svc/score?shape="+tt.shape, "{}", nil)
			switch tt.method {
			case "GET":
				res = do(t, tt.method, base+"/api/v1/service/svc/score?shape="+tt.shape, "", nil)
			case "HEAD": // a HEAD answer has no body whatever its Content-Length says
				res = do(t, tt.method, base+"/api/v1/service/svc/swagger.json", "", nil)
			}
			if res.status != tt.status || res.body != tt.body {
				t.Errorf("%s %s #%d: %d %q, want %d %q", tt.method, tt.shape, i, res.status, short(res.body), tt.status, short(tt.body))
			}
			if tt.shape == "multi" && strings.Join(res.header.Values("X-Multi"), ",") != "a,b" {
				t.Errorf("multi-valued header: %v", res.header.Values("X-Multi"))
			}
		}
	}
}

func short(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}

// A replica that closes idle keep-alive connections: the next request, finding its pooled
// connection dead, is sent again on a new one instead of failing.
func TestStaleConnectionRetried(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var served atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				// Answer one request, then close: a keep-alive server's idle timeout, at once.
				defer c.Close()
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				served.Add(1)
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(10 * time.Millisecond)
			}()
		}
	}()
	r, base := startRouter(t, Options{})
	mustSetService(t, r, ServiceConfig{Name: "svc"})
	mustSetReplicas(t, r, "svc", "svc", []Replica{{ID: "a", URL: "http://" + ln.Addr().String(), Ready: true}})
	for i := range 5 {
		if res := score(t, base, "svc", nil); res.status != 200 || res.body != "ok" {
			t.Fatalf("request %d: %d %q", i, res.status, res.body)
		}
		time.Sleep(20 * time.Millisecond) // let the replica close the connection
	}
	if served.Load() != 5 {
		t.Errorf("replica served %d requests, want 5 (no duplicates)", served.Load())
	}
}

// Bodies of unknown length and bodies over the fast path's size go through http.Transport.
func TestStreamedBodies(t *testing.T) {
	up := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "%d", n)
	})
	r, base := startRouter(t, Options{})
	plain(t, r, "svc", Limits{}, up)
	for _, size := range []int{10, fastBodyMax + 1, 3 << 20} {
		for _, chunked := range []bool{false, true} {
			req, _ := http.NewRequest("POST", base+"/api/v1/service/svc/score", io.MultiReader(strings.NewReader(strings.Repeat("x", size))))
			if !chunked {
				req.ContentLength = int64(size)
			}
			resp, err := testClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(b) != fmt.Sprint(size) {
				t.Errorf("size %d chunked %t: %d %q", size, chunked, resp.StatusCode, b)
			}
		}
	}
}

// readHeaders gathers values before adding them to the header: past its 16-header and
// 512-byte stack buffers, with repeated names, every value must arrive in order.
func TestReadHeadersManyAndRepeated(t *testing.T) {
	var raw strings.Builder
	want := http.Header{}
	for i := range 40 {
		k, v := fmt.Sprintf("X-H%d", i%7), fmt.Sprintf("v%d-%s", i, strings.Repeat("x", i*3))
		fmt.Fprintf(&raw, "%s: %s\r\n", k, v)
		want[k] = append(want[k], v)
	}
	raw.WriteString("Content-Length: 2\r\nConnection: keep-alive\r\nAuthorization: secret\r\n\r\nok")
	want["Content-Length"] = []string{"2"}
	h := http.Header{}
	keep, length, chunked, err := readHeaders(bufio.NewReader(strings.NewReader(raw.String())), h, true, false)
	if err != nil || !keep || length != 2 || chunked {
		t.Fatalf("keep %v length %d chunked %v err %v", keep, length, chunked, err)
	}
	if fmt.Sprint(h) != fmt.Sprint(want) {
		t.Errorf("headers\n got %v\nwant %v", h, want)
	}
	h["X-H0"] = append(h["X-H0"], "later") // must not overwrite a neighbouring value
	if fmt.Sprint(h["X-H1"]) != fmt.Sprint(want["X-H1"]) {
		t.Errorf("appending to one header changed another: %v", h["X-H1"])
	}
}
