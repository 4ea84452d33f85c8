// Package compute defines the targets that run a service's replicas: this machine, or a Kubernetes cluster.
package compute

import (
	"context"
	"errors"
	"io"

	"github.com/mlship/mlship/internal/config"
	"time"
)

// Key names one set of replicas: a service, or one version of an endpoint.
type Key struct {
	Workspace string
	Service   string
	Version   string // the endpoint version; the service name for a plain service
}

func (k Key) String() string {
	if k.Version == "" || k.Version == k.Service {
		return k.Workspace + "/" + k.Service
	}
	return k.Workspace + "/" + k.Service + "/" + k.Version
}

// Spec is everything a target needs to run replicas of one model.
type Spec struct {
	Key
	Generation int64 // a new generation rolls the replicas

	ModelDir string // served as AZUREML_MODEL_DIR
	// Models are the registered versions materialized in ModelDir, as their archives: a target
	// that builds images makes each one a content-addressed layer (the local target ignores them).
	Models      []ModelArchive
	SourceDir   string // holds the entry script; "" for no-code models
	EntryScript string // relative to SourceDir
	Python      string // interpreter for entry scripts (a cached environment's, or the system's)
	// BaseImage is the inference config's base image (baseImage, or environment.docker.baseImage);
	// a target that builds images starts from it instead of its default Python base.
	BaseImage string
	Env       map[string]string // environment variables for the replica

	Replicas              int // initial replica count
	Workers               int // model workers per replica
	MaxConcurrentRequests int
	MaxQueueWait          time.Duration
	ScoringTimeout        time.Duration

	CPU, MemoryGB float64 // requests (the Kubernetes target uses them; local ignores)
	// Limits and the liveness probe, from the deployment config (the Kubernetes target's).
	CPULimit, MemoryGBLimit float64
	GPUCores                int
	Liveness                config.LivenessProbeRequirements
}

// ModelArchive is one registered model version's archive (the registry's tar and its sha256).
type ModelArchive struct {
	Name, Version string
	SHA256        string
	Open          func() (io.ReadCloser, error)
}

// Replica is one running copy, as the router sees it.
type Replica struct {
	ID    string
	URL   string // base URL, e.g. http://127.0.0.1:40123
	Ready bool
}

// Status is what a target observes of a Key.
type Status struct {
	Generation int64
	Desired    int
	Ready      int
	State      string // store.State* values
	Error      string
	Replicas   []Replica
}

// LogOptions select replica logs.
type LogOptions struct {
	Tail int  // last N lines (0 = all kept)
	Init bool // only the model-loading part (up to the first ready)
}

// Target runs replicas. Every implementation passes computetest.Run.
type Target interface {
	// Apply starts the replicas of spec, or rolls existing ones to a new generation: the new
	// replicas become ready before the old ones stop. It returns when the new generation is ready
	// or has failed (the error says why), or ctx ends.
	Apply(ctx context.Context, spec Spec) error
	// Scale changes the number of replicas of the current generation.
	Scale(ctx context.Context, key Key, replicas int) error
	Status(ctx context.Context, key Key) (Status, error)
	Logs(ctx context.Context, key Key, o LogOptions) (string, error)
	// Delete stops every replica of key and frees what they held.
	Delete(ctx context.Context, key Key) error
}

// Checker is a Target that can refuse a spec it cannot run before the deployer writes anything.
type Checker interface {
	Check(spec Spec) error
}

// ReplicaWatcher is told whenever the replica set of a key changes (the router's view).
type ReplicaWatcher func(key Key, replicas []Replica)

// ErrUnschedulable marks an Apply that failed because no node can take the replicas; the
// service's state is then Unschedulable rather than Failed, as in Azure ML.
var ErrUnschedulable = errors.New("unschedulable")

type unschedulable struct{ msg string }

func (u unschedulable) Error() string        { return u.msg }
func (u unschedulable) Is(target error) bool { return target == ErrUnschedulable }

// Unschedulable returns an error with msg that matches ErrUnschedulable.
func Unschedulable(msg string) error { return unschedulable{msg} }
