// Package router is mlship's scoring front door (its azureml-fe): auth, endpoint traffic split, least-outstanding balancing with a bounded wait queue, metrics and the autoscaler.
package router
