package kubernetes

import (
	"regexp"

	"github.com/mlship/mlship/internal/errdefs"
)

var aksID = regexp.MustCompile(`^/subscriptions/[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}` +
	`/resourceGroups/[-\w._()]{1,90}/providers/(?i:Microsoft\.ContainerService/managedClusters)/([a-zA-Z0-9][-_a-zA-Z0-9]{0,62})$`)

// CheckAKSResourceID validates an AKS cluster's Azure resource id and returns the cluster's name:
// /subscriptions/<guid>/resourceGroups/<rg>/providers/Microsoft.ContainerService/managedClusters/<name>.
func CheckAKSResourceID(id string) (string, error) {
	m := aksID.FindStringSubmatch(id)
	if m == nil {
		return "", errdefs.Invalid("invalid AKS resource id %q: want /subscriptions/<subscription guid>/resourceGroups/<group>/providers/Microsoft.ContainerService/managedClusters/<cluster>", id)
	}
	return m[1], nil
}
