package router

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkServeHTTP measures the router's own cost per request (allocations included):
// ServeHTTP called directly, forwarding over loopback to a trivial upstream.
func BenchmarkServeHTTP(b *testing.B) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, `{"result":[0.5]}`)
	}))
	defer up.Close()
	r := New(Options{})
	defer r.Close()
	if err := r.SetService(ServiceConfig{Name: "svc", Auth: AuthConfig{KeyAuth: true, Keys: []string{"k1", "k2"}},
		Limits: Limits{MaxConcurrentRequestsPerContainer: 64}}); err != nil {
		b.Fatal(err)
	}
	if err := r.SetReplicas("svc", "svc", []Replica{{ID: "a", URL: up.URL, Ready: true}}); err != nil {
		b.Fatal(err)
	}
	const body = `{"data":[[1,2,3,4]]}`
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			req, _ := http.NewRequest("POST", "/api/v1/service/svc/score", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer k1")
			clear(w.h)
			w.code = 0
			r.ServeHTTP(w, req)
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
		}
	})
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
