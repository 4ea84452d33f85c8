package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/archive"
	"github.com/mlship/mlship/internal/compute/kubernetes/resources"
)

// The model every service serves: examples/stdlib, a small entry script on the standard library.
const (
	exampleDir   = "examples/stdlib"
	exampleModel = "examples/stdlib/model/weights.json"
)

// example is a deploy request for examples/stdlib on target, with its source folder.
type example struct {
	req api.DeployRequest
	src *archive.Plan
}

// newExample registers the example's model as lin:1 and returns the request deploying it on
// target with replicas replicas of 0.1 CPU and 256 MB.
func newExample(ctx context.Context, c *api.Client, target string, replicas int) (example, error) {
	model, err := archive.NewPlan(exampleModel)
	if err != nil {
		return example{}, err
	}
	if _, err := c.RegisterModel(ctx, "default", api.ModelSpec{Name: "lin"}, model, nil); err != nil {
		return example{}, fmt.Errorf("register the model: %w", err)
	}
	src, err := archive.NewPlan(exampleDir)
	if err != nil {
		return example{}, err
	}
	ic, err := os.ReadFile(exampleDir + "/inferenceconfig.json")
	if err != nil {
		return example{}, err
	}
	dc, _ := json.Marshal(map[string]any{"numReplicas": replicas,
		"containerResourceRequirements": map[string]any{"cpu": 0.1, "memoryInGB": 0.25}})
	return example{
		req: api.DeployRequest{Models: []string{"lin:1"}, InferenceConfig: ic, DeploymentConfig: dc, ComputeTarget: target},
		src: src,
	}, nil
}

// deploy starts a deploy of the example as service name; the answer is the started operation.
func (e example) deploy(ctx context.Context, c *api.Client, name string) (api.Operation, error) {
	req := e.req
	req.Name = name
	op, err := c.DeployService(ctx, "default", req, e.src)
	if err != nil {
		return op, fmt.Errorf("deploy %s: %w", name, err)
	}
	return op, nil
}

// wait polls an operation until it ends, every 50 ms (the CLI waits the same way, less often).
func wait(ctx context.Context, c *api.Client, op api.Operation) error {
	var err error
	for !op.Done() {
		if err := sleep(ctx, 50*time.Millisecond); err != nil {
			return err
		}
		if op, err = c.GetOperation(ctx, "default", op.ID); err != nil {
			return err
		}
	}
	if op.State != "Succeeded" {
		return fmt.Errorf("%s of %s: %s: %s", op.OperationType, op.ServiceName, op.State, op.Error)
	}
	return nil
}

// deployAndWait times a deploy from the call to its operation's end (the service Healthy).
func (e example) deployAndWait(ctx context.Context, c *api.Client, name string) (time.Duration, error) {
	start := time.Now()
	op, err := e.deploy(ctx, c, name)
	if err != nil {
		return 0, err
	}
	if err := wait(ctx, c, op); err != nil {
		return 0, err
	}
	took := time.Since(start)
	if svc, err := c.GetService(ctx, "default", name); err != nil || svc.State != "Healthy" {
		return 0, fmt.Errorf("%s after its deploy succeeded: state %q (%v)", name, svc.State, err)
	}
	return took, nil
}

func deleteAndWait(ctx context.Context, c *api.Client, name string) error {
	op, err := c.DeleteService(ctx, "default", name)
	if err != nil {
		return fmt.Errorf("delete %s: %w", name, err)
	}
	return wait(ctx, c, op)
}

// replicaDeployment is the Deployment mlship made for a service.
func (tb *testbed) replicaDeployment(ctx context.Context, ns, service string) (*appsv1.Deployment, error) {
	l, err := tb.cs.AppsV1().Deployments(ns).List(ctx, metav1.ListOptions{LabelSelector: resources.LabelService + "=" + service})
	if err != nil {
		return nil, err
	}
	if len(l.Items) != 1 {
		return nil, fmt.Errorf("service %s has %d Deployments in %s, want 1", service, len(l.Items), ns)
	}
	return &l.Items[0], nil
}
