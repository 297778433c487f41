// pause: the init process of each pod sandbox on the local cluster's real node
// (ops/k8s/node.py builds it into the image llm-optimizer.local/pause:1; nothing is pulled).
// It sleeps until SIGINT or SIGTERM and reaps the orphans it inherits on SIGCHLD.
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
