package cmdutil

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"sigs.k8s.io/yaml"
)

// Format returns the output format: the -o flag, else table on a terminal and json when piped.
func (f *Factory) Format() (string, error) {
	switch o := strings.ToLower(f.Globals.Output); o {
	case "table", "json", "yaml":
		return o, nil
	case "":
		if f.IO.IsStdoutTTY() {
			return "table", nil
		}
		return "json", nil
	default:
		return "", FlagErrorf("invalid output format %q: use table, json or yaml", f.Globals.Output)
	}
}

// Print writes v in the chosen format; table renders the table form.
func (f *Factory) Print(v any, table func(t *Table)) error {
	format, err := f.Format()
	if err != nil {
		return err
	}
	return Write(f.IO.Out, format, v, table)
}

// Write renders v as json, yaml, or a table built by table.
func Write(w io.Writer, format string, v any, table func(t *Table)) error {
	switch format {
	case "json":
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(v)
	case "yaml":
		b, err := yaml.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	default:
		t := &Table{tw: tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)}
		table(t)
		return t.tw.Flush()
	}
}

// Table is a column-aligned text table.
type Table struct{ tw *tabwriter.Writer }

// Row writes one row; values are printed with %v.
func (t *Table) Row(cols ...any) {
	s := make([]string, len(cols))
	for i, c := range cols {
		s[i] = strings.ReplaceAll(fmt.Sprint(c), "\t", " ")
	}
	fmt.Fprintln(t.tw, strings.Join(s, "\t"))
}
