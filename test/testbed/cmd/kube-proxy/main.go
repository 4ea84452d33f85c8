// Command kube-proxy is the Kubernetes v1.37.2 service proxy (iptables mode), built for the testbed's real node.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/kubernetes/cmd/kube-proxy/app"
)

func main() { os.Exit(cli.Run(app.NewProxyCommand())) }
