package config

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"unicode/utf8"
)

// The schema of a config file is its Go type: json tags name the keys, field types give the
// expected JSON types. One source of truth, so a new field cannot be forgotten by the checker.

// customChecker is implemented by types whose JSON shape is not a plain struct (a conda
// dependency is either a string or {pip: [...]}).
type customChecker interface {
	checkJSON(w *walker, path string, v any)
	jsonTypeName() string
}

var (
	customCheckerType = reflect.TypeFor[customChecker]()
	reflectStrings    = reflect.TypeFor[[]string]()
)

type walker struct {
	root       reflect.Type
	probs      problems
	typeErrors int
	aliases    map[string]string   // other spellings, by lower-case key or full path → JSON path
	leaves     map[string][]string // lower-case key → every full path with that key
}

func newWalker(v any, aliases map[string]string) *walker {
	root := reflect.TypeOf(v)
	for root.Kind() == reflect.Pointer {
		root = root.Elem()
	}
	w := &walker{root: root, aliases: aliases, leaves: map[string][]string{}}
	w.index("", root, 0)
	return w
}

// index records every key path of t so a key given at the wrong level can be pointed home.
func (w *walker) index(prefix string, t reflect.Type, depth int) {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || depth > 6 || reflect.PointerTo(t).Implements(customCheckerType) {
		return
	}
	for _, f := range fields(t) {
		p := joinPath(prefix, f.name)
		w.leaves[strings.ToLower(f.name)] = append(w.leaves[strings.ToLower(f.name)], p)
		w.index(p, f.typ, depth+1)
	}
}

type field struct {
	name string
	typ  reflect.Type
}

func fields(t reflect.Type) []field {
	var out []field
	for i := range t.NumField() {
		sf := t.Field(i)
		if !sf.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(sf.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		out = append(out, field{name, sf.Type})
	}
	return out
}

func joinPath(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func (w *walker) typeError(path string, t reflect.Type, v any) {
	w.typeErrors++
	w.probs.add(path, "expected %s, got %s", typeName(t), describe(v))
}

// walk checks v (decoded with UseNumber) against t. JSON null is accepted anywhere: it means "not given".
func (w *walker) walk(path string, v any, t reflect.Type) {
	if v == nil {
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(customCheckerType) {
		reflect.New(t).Interface().(customChecker).checkJSON(w, path, v)
		return
	}
	switch t.Kind() {
	case reflect.Interface:
		return
	case reflect.String:
		if _, ok := v.(string); !ok {
			w.typeError(path, t, v)
		}
	case reflect.Bool:
		if _, ok := v.(bool); !ok {
			w.typeError(path, t, v)
		}
	case reflect.Int, reflect.Int64, reflect.Int32:
		n, ok := v.(json.Number)
		if !ok {
			w.typeError(path, t, v)
			return
		}
		if _, err := n.Int64(); err != nil {
			w.typeError(path, t, v)
		}
	case reflect.Float64, reflect.Float32:
		n, ok := v.(json.Number)
		if !ok {
			w.typeError(path, t, v)
			return
		}
		if _, err := n.Float64(); err != nil {
			w.typeError(path, t, v)
		}
	case reflect.Slice:
		list, ok := v.([]any)
		if !ok {
			w.typeError(path, t, v)
			return
		}
		for i, item := range list {
			w.walk(fmt.Sprintf("%s[%d]", path, i), item, t.Elem())
		}
	case reflect.Map:
		obj, ok := v.(map[string]any)
		if !ok {
			w.typeError(path, t, v)
			return
		}
		for _, k := range sortedKeys(obj) {
			w.walk(joinPath(path, k), obj[k], t.Elem())
		}
	case reflect.Struct:
		obj, ok := v.(map[string]any)
		if !ok {
			w.typeError(path, t, v)
			return
		}
		known := map[string]reflect.Type{}
		var names []string
		for _, f := range fields(t) {
			known[f.name] = f.typ
			names = append(names, f.name)
		}
		for _, k := range sortedKeys(obj) {
			ft, ok := known[k]
			if !ok {
				w.unknown(path, k, names)
				delete(obj, k)
				continue
			}
			w.walk(joinPath(path, k), obj[k], ft)
		}
	default:
		panic(fmt.Sprintf("config: no schema rule for %s", t))
	}
}

func (w *walker) unknown(prefix, key string, siblings []string) {
	full := joinPath(prefix, key)
	if s := w.suggest(prefix, key, siblings); s != "" {
		w.probs.add(full, "unknown key (did you mean %s?)", s)
		return
	}
	w.probs.add(full, "unknown key (valid keys here: %s)", strings.Join(siblings, ", "))
}

// suggest names the closest valid key: a sibling within a small edit distance, a known other
// spelling (azureml-core's Python parameter names), or the same key at another level.
func (w *walker) suggest(prefix, key string, siblings []string) string {
	lk := strings.ToLower(key)
	if p, ok := w.aliases[strings.ToLower(joinPath(prefix, key))]; ok {
		return p
	}
	if p, ok := w.aliases[lk]; ok {
		return p
	}
	best, bestD := "", -1
	for _, s := range siblings {
		d := levenshtein(lk, strings.ToLower(s))
		if bestD < 0 || d < bestD {
			best, bestD = s, d
		}
	}
	limit := utf8.RuneCountInString(key) / 3
	limit = max(1, min(limit, 3))
	if bestD >= 0 && bestD <= limit {
		return joinPath(prefix, best)
	}
	// A shortened or lengthened key: "memory" for memoryInGB, "livenessProbe" for livenessProbeRequirements.
	if len(lk) >= 4 {
		for _, s := range siblings {
			ls := strings.ToLower(s)
			if strings.HasPrefix(ls, lk) || strings.HasPrefix(lk, ls) {
				return joinPath(prefix, s)
			}
		}
	}
	if paths := w.leaves[lk]; len(paths) > 0 {
		return strings.Join(paths, " or ")
	}
	return ""
}

// levenshtein is the edit distance between a and b, in runes.
func levenshtein(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	prev := make([]int, len(rb)+1)
	cur := make([]int, len(rb)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(ra); i++ {
		cur[0] = i
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(rb)]
}

func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func typeName(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(customCheckerType) {
		return reflect.New(t).Interface().(customChecker).jsonTypeName()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean (true or false)"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "an integer"
	case reflect.Float64, reflect.Float32:
		return "a number"
	case reflect.Slice:
		return "a list of " + strings.TrimPrefix(strings.TrimPrefix(typeName(t.Elem()), "a "), "an ") + "s"
	case reflect.Map:
		return "an object of " + strings.TrimPrefix(strings.TrimPrefix(typeName(t.Elem()), "a "), "an ") + "s"
	default:
		return "an object"
	}
}

// describe names a decoded JSON value for a message: its JSON type and, for scalars, the value.
func describe(v any) string {
	switch t := v.(type) {
	case nil:
		return "null"
	case string:
		if len(t) > 40 {
			t = t[:37] + "..."
		}
		return fmt.Sprintf("string %q", t)
	case bool:
		return fmt.Sprintf("boolean %t", t)
	case json.Number:
		return "number " + t.String()
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}
