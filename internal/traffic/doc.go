// Package traffic holds the pure rules of an endpoint's traffic split (Azure ML AksEndpoint semantics) and the deterministic pickers the router uses to apply it.
package traffic
