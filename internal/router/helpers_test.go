package router

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

var testClient = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 20 * time.Second}

// startRouter serves a new Router on 127.0.0.1 and closes both at the end of the test.
func startRouter(t *testing.T, opts Options) (*Router, string) {
	t.Helper()
	r := New(opts)
	srv := httptest.NewServer(r)
	t.Cleanup(func() {
		srv.Close()
		r.Close()
	})
	return r, srv.URL
}

// upstream is a replica on 127.0.0.1.
func upstream(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// echo answers 200 with name, so tests can see which replica served.
func echo(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, name)
	}
}

func ready(servers ...*httptest.Server) []Replica {
	out := make([]Replica, len(servers))
	for i, s := range servers {
		out[i] = Replica{ID: s.URL[strings.LastIndexByte(s.URL, ':')+1:], URL: s.URL, Ready: true}
	}
	return out
}

func mustSetService(t *testing.T, r *Router, cfg ServiceConfig) {
	t.Helper()
	if err := r.SetService(cfg); err != nil {
		t.Fatalf("SetService: %v", err)
	}
}

func mustSetReplicas(t *testing.T, r *Router, svc, ver string, reps []Replica) {
	t.Helper()
	if err := r.SetReplicas(svc, ver, reps); err != nil {
		t.Fatalf("SetReplicas: %v", err)
	}
}

// plain configures a one-version service named name over servers, auth off.
func plain(t *testing.T, r *Router, name string, lim Limits, servers ...*httptest.Server) {
	t.Helper()
	mustSetService(t, r, ServiceConfig{Name: name, Limits: lim})
	mustSetReplicas(t, r, name, name, ready(servers...))
}

type result struct {
	status int
	body   string
	header http.Header
}

// do sends a request and reads the whole answer.
func do(t testing.TB, method, url, body string, header map[string]string) result {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := testClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return result{}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Errorf("read %s: %v", url, err)
	}
	return result{resp.StatusCode, string(b), resp.Header}
}

func score(t testing.TB, base, svc string, header map[string]string) result {
	t.Helper()
	return do(t, "POST", base+"/api/v1/service/"+svc+"/score", `{"data":[1]}`, header)
}

// errorCode decodes Azure's error body and returns its code and message.
func errorCode(t *testing.T, res result) (code, msg string) {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal([]byte(res.body), &e); err != nil {
		t.Fatalf("error body %q is not JSON: %v", res.body, err)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q", ct)
	}
	return e.Error.Code, e.Error.Message
}

type httptestSrv = httptest.Server

func newHTTPTestSrv(t *testing.T, h http.Handler) *httptest.Server {
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}
