package kubernetes

import "testing"

func TestCheckAKSResourceID(t *testing.T) {
	const sub = "/subscriptions/0b1f6471-1bf0-4dda-aec3-cb9272f09590/resourceGroups/ml-rg"
	for id, want := range map[string]string{
		sub + "/providers/Microsoft.ContainerService/managedClusters/prod-aks":                               "prod-aks",
		sub + "/providers/microsoft.containerservice/MANAGEDCLUSTERS/a":                                      "a",
		sub + "/providers/Microsoft.Compute/virtualMachines/vm":                                              "",
		sub + "/providers/Microsoft.ContainerService/managedClusters/":                                       "",
		"/subscriptions/not-a-guid/resourceGroups/rg/providers/Microsoft.ContainerService/managedClusters/a": "",
		"prod-aks": "",
		"":         "",
	} {
		got, err := CheckAKSResourceID(id)
		if (err == nil) != (want != "") || got != want {
			t.Errorf("CheckAKSResourceID(%q) = %q, %v; want %q", id, got, err, want)
		}
	}
}
