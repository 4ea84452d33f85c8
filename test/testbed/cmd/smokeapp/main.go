// Command smokeapp is the static test workload of the testbed smoke test: an HTTP server on :8080,
// and `smokeapp probe [URL]` (run by kubectl exec and the readiness probe) which checks it from inside the pod
// (default URL http://127.0.0.1:8080/healthz; the smoke test also passes ClusterIP URLs).
package main

import (
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "probe" {
		url := "http://127.0.0.1:8080/healthz"
		if len(os.Args) > 2 {
			url = os.Args[2]
		}
		client := &http.Client{Timeout: 5 * time.Second}
		resp, err := client.Get(url)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		body, _ := io.ReadAll(resp.Body)
		fmt.Printf("probe: %s %s\n", resp.Status, body)
		if resp.StatusCode != http.StatusOK {
			os.Exit(1)
		}
		return
	}
	host, _ := os.Hostname()
	http.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") })
	log.Printf("smokeapp serving on :8080 in pod %s", host)
	log.Fatal(http.ListenAndServe(":8080", nil))
}
