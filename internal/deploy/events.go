package deploy

import (
	"fmt"
	"strings"
	"time"
)

// maxEvents is how many events a service keeps (in memory; they explain recent decisions).
const maxEvents = 200

// Event records something mlship did to a service (a scale decision, a restart), shown by get-logs.
func (d *Deployer) Event(service, format string, a ...any) {
	line := d.opts.Now().UTC().Format(time.RFC3339) + " " + fmt.Sprintf(format, a...)
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.events == nil {
		d.events = map[string][]string{}
	}
	ev := append(d.events[service], line)
	if len(ev) > maxEvents {
		ev = ev[len(ev)-maxEvents:]
	}
	d.events[service] = ev
}

func (d *Deployer) eventText(service string) string {
	d.mu.Lock()
	defer d.mu.Unlock()
	ev := d.events[service]
	if len(ev) == 0 {
		return ""
	}
	return "== mlship events ==\n" + strings.Join(ev, "\n") + "\n"
}
