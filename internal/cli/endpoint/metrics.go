package endpoint

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mlship/mlship/internal/cli/cmdutil"
)

func newCmdMetrics(f *cmdutil.Factory) *cobra.Command {
	var name string
	var window time.Duration
	var compare bool
	cmd := &cobra.Command{
		Use:   "metrics -n E [--window 5m] [--compare]",
		Short: "Requests, errors and latency per version; --compare tests each treatment against the control",
		Long: `Per-version request counts by status, failures (5xx), and latency p50/p95/p99 over a window, from
1-minute buckets kept by the control plane when the deployment config has appInsightsEnabled: true.
--compare sets each treatment against the control: error rates with a two-proportion z-test and
latency with a Mann-Whitney U test (alpha 0.05), and says whether the difference is significant.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := requireName(name); err != nil {
				return err
			}
			if window <= 0 {
				return cmdutil.FlagErrorf("--window must be positive, e.g. 5m")
			}
			c, err := f.Client()
			if err != nil {
				return err
			}
			m, err := c.EndpointMetrics(cmd.Context(), f.Workspace(), name, window, compare)
			if err != nil {
				return err
			}
			if !m.AppInsightsEnabled {
				fmt.Fprintf(f.IO.ErrOut, "Note: %s does not record metrics (set appInsightsEnabled: true in its deployment config)\n", name)
			}
			return f.Print(m, func(t *cmdutil.Table) {
				t.Row("VERSION", "REQUESTS", "REQ/S", "FAILURES", "ERROR RATE", "P50 MS", "P95 MS", "P99 MS", "BY STATUS")
				for _, v := range m.Versions {
					codes := make([]string, 0, len(v.ByStatus))
					for code, n := range v.ByStatus {
						codes = append(codes, fmt.Sprintf("%s:%d", code, n))
					}
					sort.Strings(codes)
					t.Row(v.Version, v.Requests, fmt.Sprintf("%.1f", v.RequestsPerSecond), v.Failures, fmt.Sprintf("%.2f%%", v.ErrorRate*100),
						fmt.Sprintf("%.2f", v.P50Ms), fmt.Sprintf("%.2f", v.P95Ms), fmt.Sprintf("%.2f", v.P99Ms), strings.Join(codes, " "))
				}
				if len(m.Comparisons) > 0 {
					t.Row("")
					t.Row("TREATMENT", "VS CONTROL", "ERROR RATE DIFF", "ERRORS", "P50 DIFF MS", "LATENCY")
					for _, c := range m.Comparisons {
						t.Row(c.Treatment, c.Control, fmt.Sprintf("%+.2f%%", c.ErrorRateDiff*100), c.ErrorVerdict,
							fmt.Sprintf("%+.2f", c.P50DiffMs), c.LatencyVerdict)
					}
				}
			})
		},
	}
	cmd.Flags().StringVarP(&name, "name", "n", "", "endpoint (or service) name")
	cmd.Flags().DurationVar(&window, "window", 5*time.Minute, "how far back to look")
	cmd.Flags().BoolVar(&compare, "compare", false, "test each treatment against the control version")
	return cmd
}
