package traffic

import "github.com/mlship/mlship/internal/errdefs"

// Add returns versions with spec appended. The first version is the default and the
// control whatever spec says; a later one takes either role only when spec asks.
// versions is not modified.
func Add(versions []Version, spec Version) ([]Version, error) {
	if err := ValidateName(spec.Name); err != nil {
		return nil, err
	}
	if index(versions, spec.Name) >= 0 {
		return nil, errdefs.Conflict("endpoint already has version %q: update it with `mlship endpoint update-version` "+
			"or pick another name", spec.Name)
	}
	if len(versions) >= MaxVersions {
		return nil, errdefs.Conflict("endpoint already holds %d versions, the most allowed: delete one before adding %q",
			MaxVersions, spec.Name)
	}
	if err := checkPercent("trafficPercentile", spec.Name, spec.TrafficPercentile); err != nil {
		return nil, err
	}
	if err := checkPercent("mirrorPercentile", spec.Name, spec.MirrorPercentile); err != nil {
		return nil, err
	}
	out := make([]Version, 0, len(versions)+1)
	out = append(out, versions...)
	first := len(versions) == 0
	spec.IsDefault = first || spec.IsDefault
	spec.IsControl = first || spec.IsControl
	out = append(out, spec)
	setRoles(out, len(out)-1, spec.IsDefault, spec.IsControl)
	if err := checkSums(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Update returns versions with patch applied to the version called name.
func Update(versions []Version, name string, patch Patch) ([]Version, error) {
	i := index(versions, name)
	if i < 0 {
		return nil, notFound(name)
	}
	out := append([]Version(nil), versions...)
	if p := patch.TrafficPercentile; p != nil {
		if err := checkPercent("trafficPercentile", name, *p); err != nil {
			return nil, err
		}
		out[i].TrafficPercentile = *p
	}
	if p := patch.MirrorPercentile; p != nil {
		if err := checkPercent("mirrorPercentile", name, *p); err != nil {
			return nil, err
		}
		out[i].MirrorPercentile = *p
	}
	setRoles(out, i, patch.IsDefault, patch.IsControl)
	if err := checkSums(out); err != nil {
		return nil, err
	}
	return out, nil
}

// Delete returns versions without the version called name. Deleting the default is
// refused while others remain unless newDefault names the version to take its place
// (newDefault may also move the default when deleting another version). If the control
// version is deleted, the default version becomes the control, being the baseline that
// already receives unallocated traffic. The last version is never deleted: that is
// deleting the endpoint.
func Delete(versions []Version, name, newDefault string) ([]Version, error) {
	i := index(versions, name)
	if i < 0 {
		return nil, notFound(name)
	}
	if len(versions) == 1 {
		return nil, errdefs.Conflict("version %q is the endpoint's only version: an endpoint needs at least one, "+
			"so delete the endpoint instead (`mlship service delete`)", name)
	}
	if newDefault == name {
		return nil, errdefs.Invalid("version %q cannot be the new default: it is the version being deleted", name)
	}
	if newDefault == "" && versions[i].IsDefault {
		return nil, errdefs.Conflict("version %q is the default version and receives unallocated traffic: "+
			"make another version the default (--is-default) before deleting it", name)
	}
	out := make([]Version, 0, len(versions)-1)
	out = append(out, versions[:i]...)
	out = append(out, versions[i+1:]...)
	if newDefault != "" {
		j := index(out, newDefault)
		if j < 0 {
			return nil, notFound(newDefault)
		}
		setRoles(out, j, true, false)
	}
	if versions[i].IsControl {
		for j := range out {
			out[j].IsControl = out[j].IsDefault
		}
	}
	return out, nil
}

// setRoles gives the default and/or control role to vs[i], taking it from every other
// version, so two holders of a role cannot arise.
func setRoles(vs []Version, i int, makeDefault, makeControl bool) {
	for j := range vs {
		if makeDefault {
			vs[j].IsDefault = j == i
		}
		if makeControl {
			vs[j].IsControl = j == i
		}
	}
}
