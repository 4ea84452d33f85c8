// Package kubernetes is the Kubernetes compute target: attaching a cluster (access, RBAC and capacity checks) and cleaning up after it.
package kubernetes
