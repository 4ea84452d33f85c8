// Command etcd is the etcd v3 server the testbed's API server stores its state in.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
