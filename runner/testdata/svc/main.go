// Command svc is a tiny service for the runner's tests: "dep" answers
// every request; "front" calls dep for each request, with an optional
// timeout after which it answers from a fallback instead of waiting.
package main

import (
	"context"
	"flag"
	"io"
	"log"
	"net/http"
	"time"
)

func main() {
	mode := flag.String("mode", "dep", "dep or front")
	listen := flag.String("listen", "127.0.0.1:0", "address")
	dep := flag.String("dep", "", "front: the dependency's URL")
	timeout := flag.Duration("timeout", 0, "front: how long to wait for dep before the fallback; 0 waits forever")
	flag.Parse()
	mux := http.NewServeMux()
	mux.HandleFunc("/health", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if *mode == "dep" {
			io.WriteString(w, "dep")
			return
		}
		ctx := r.Context()
		if *timeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, *timeout)
			defer cancel()
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, *dep, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			if *timeout > 0 {
				io.WriteString(w, "fallback")
				return
			}
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			http.Error(w, "dep: "+resp.Status, http.StatusBadGateway)
			return
		}
		io.Copy(w, resp.Body)
	})
	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	log.Fatal(srv.ListenAndServe())
}
