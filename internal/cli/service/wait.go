package service

import (
	"context"
	"fmt"
	"time"

	"github.com/mlship/mlship/api"
	"github.com/mlship/mlship/internal/cli/cmdutil"
)

// pollEvery is how often a waiting CLI asks for the operation's state.
const pollEvery = 250 * time.Millisecond

// poll waits for op to end, calling tick (if set) on every look.
func poll(ctx context.Context, c *api.Client, ws string, op api.Operation, tick func(api.Operation)) (api.Operation, error) {
	for !op.Done() {
		select {
		case <-ctx.Done():
			return op, ctx.Err()
		case <-time.After(pollEvery):
		}
		var err error
		if op, err = c.GetOperation(ctx, ws, op.ID); err != nil {
			return op, err
		}
		if tick != nil {
			tick(op)
		}
	}
	return op, nil
}

// WaitOperation follows an operation to its end with progress on stderr; an error when it ends Failed.
func WaitOperation(ctx context.Context, f *cmdutil.Factory, c *api.Client, op api.Operation, noWait bool) error {
	if noWait {
		fmt.Fprintf(f.IO.ErrOut, "%s of %s started (operation %s)\n", op.OperationType, op.ServiceName, op.ID)
		return nil
	}
	start := time.Now()
	op, err := poll(ctx, c, f.Workspace(), op, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.ErrOut, "%s of %s %s after %.1fs\n", op.OperationType, op.ServiceName, op.State, time.Since(start).Seconds())
	if op.State != "Succeeded" {
		return cmdutil.WithHint(fmt.Errorf("%s of %s ended %s: %s", op.OperationType, op.ServiceName, op.State, op.Error),
			"see 'mlship endpoint show -n %s' and 'mlship service get-logs -n %s'", op.ServiceName, op.ServiceName)
	}
	return nil
}

// Wait follows a deploy or update to its end, as Azure's wait_for_deployment(show_output=True):
// progress on stderr, the service on stdout, and an error (non-zero exit) when it ends Failed.
func Wait(ctx context.Context, f *cmdutil.Factory, c *api.Client, op api.Operation, noWait bool) error {
	ws := f.Workspace()
	if noWait {
		fmt.Fprintf(f.IO.ErrOut, "%s of %s started (operation %s); follow it with 'mlship service show -n %s'\n", op.OperationType, op.ServiceName, op.ID, op.ServiceName)
		return f.Print(op, func(t *cmdutil.Table) {
			t.Row("OPERATION", op.ID)
			t.Row("TYPE", op.OperationType)
			t.Row("STATE", op.State)
		})
	}
	start := time.Now()
	fmt.Fprintf(f.IO.ErrOut, "%s of service %s: operation %s\n", op.OperationType, op.ServiceName, op.ID)
	lastState := ""
	op, err := poll(ctx, c, ws, op, func(api.Operation) {
		svc, err := c.GetService(ctx, ws, op.ServiceName)
		if err == nil && svc.State != lastState {
			lastState = svc.State
			fmt.Fprintf(f.IO.ErrOut, "  %5.1fs  %s  (%d/%d replicas ready)\n", time.Since(start).Seconds(), svc.State, svc.Replicas.Ready, svc.Replicas.Desired)
		}
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.ErrOut, "%s %s after %.1fs\n", op.OperationType, op.State, time.Since(start).Seconds())
	svc, serr := c.GetService(ctx, ws, op.ServiceName)
	if serr == nil {
		if err := PrintService(f, svc); err != nil {
			return err
		}
	}
	if op.State != "Succeeded" {
		return cmdutil.WithHint(fmt.Errorf("%s of %s ended %s: %s", op.OperationType, op.ServiceName, op.State, op.Error),
			"see the model's log with 'mlship service get-logs -n %s --init'", op.ServiceName)
	}
	return nil
}
