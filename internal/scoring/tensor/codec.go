package tensor

import (
	"fmt"
	"math"
	"strconv"
)

// Number is an element type the codec reads and writes.
type Number interface {
	~float32 | ~float64 | ~int8 | ~int16 | ~int32 | ~int64 | ~uint8 | ~uint16 | ~uint32 | ~uint64 | ~bool
}

// Walk scans a JSON value that is a number, a boolean or a (nested, rectangular) array of them,
// calling leaf for each element token in row-major order, and returns the array's shape.
// It exists because encoding/json into []any costs more than the model run for small tensors.
func Walk(raw []byte, leaf func(tok []byte) error) ([]int64, error) {
	w := walker{b: raw, leafDepth: -1, leaf: leaf}
	if err := w.value(0); err != nil {
		return nil, err
	}
	w.ws()
	if w.i != len(w.b) {
		return nil, fmt.Errorf("%w: unexpected %q after the array", ErrMalformed, w.b[w.i])
	}
	if w.leafDepth == -1 && len(w.shape) == 0 {
		return nil, fmt.Errorf("%w: no data", ErrMalformed)
	}
	return w.shape, nil
}

type walker struct {
	b         []byte
	i         int
	shape     []int64
	leafDepth int
	leaf      func([]byte) error
}

func (w *walker) ws() {
	for w.i < len(w.b) {
		switch w.b[w.i] {
		case ' ', '\t', '\n', '\r':
			w.i++
		default:
			return
		}
	}
}

func (w *walker) value(depth int) error {
	w.ws()
	if w.i >= len(w.b) {
		return fmt.Errorf("%w: unexpected end of data", ErrMalformed)
	}
	if w.b[w.i] != '[' {
		return w.scalar(depth)
	}
	if w.leafDepth >= 0 && depth >= w.leafDepth {
		return fmt.Errorf("%w: ragged array (nesting depth differs between elements)", ErrMalformed)
	}
	if depth == len(w.shape) {
		w.shape = append(w.shape, -1)
	}
	w.i++
	var n int64
	w.ws()
	if w.i < len(w.b) && w.b[w.i] == ']' {
		w.i++
	} else {
		for {
			if err := w.value(depth + 1); err != nil {
				return err
			}
			n++
			w.ws()
			if w.i >= len(w.b) {
				return fmt.Errorf("%w: unexpected end of data", ErrMalformed)
			}
			if w.b[w.i] == ',' {
				w.i++
				continue
			}
			if w.b[w.i] == ']' {
				w.i++
				break
			}
			return fmt.Errorf("%w: unexpected %q in array", ErrMalformed, w.b[w.i])
		}
	}
	switch {
	case w.shape[depth] == -1:
		w.shape[depth] = n
	case w.shape[depth] != n:
		return fmt.Errorf("%w: ragged array (dimension %d has both %d and %d elements)", ErrMalformed, depth, w.shape[depth], n)
	}
	return nil
}

func (w *walker) scalar(depth int) error {
	if w.leafDepth == -1 {
		w.leafDepth = depth
		if depth < len(w.shape) {
			return fmt.Errorf("%w: ragged array", ErrMalformed)
		}
	} else if depth != w.leafDepth {
		return fmt.Errorf("%w: ragged array (nesting depth differs between elements)", ErrMalformed)
	}
	start := w.i
	for w.i < len(w.b) {
		c := w.b[w.i]
		if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') {
			w.i++
			continue
		}
		break
	}
	if start == w.i {
		return fmt.Errorf("%w: expected a number at offset %d, found %q", ErrMalformed, start, w.b[start])
	}
	return w.leaf(w.b[start:w.i])
}

// Parse reads raw (nested array or flat array with the shape given separately) into a typed slice.
func Parse[T Number](raw []byte, dst []T) ([]T, []int64, error) {
	var zero T
	parse := parserFor(zero)
	shape, err := Walk(raw, func(tok []byte) error {
		v, err := parse(tok)
		if err != nil {
			return err
		}
		dst = append(dst, fromFloatOrInt[T](v))
		return nil
	})
	return dst, shape, err
}

// number is a parsed element: floats carry f, integers i (exact beyond 2^53), bools b.
type number struct {
	f     float64
	i     int64
	isInt bool
}

func fromFloatOrInt[T Number](v number) T {
	var z T
	switch any(z).(type) {
	case bool:
		return any(v.i != 0).(T)
	case float32, float64:
		if v.isInt {
			return convert[T](float64(v.i))
		}
		return convert[T](v.f)
	default:
		return convertInt[T](v.i)
	}
}

func convert[T Number](f float64) T {
	var z T
	switch any(z).(type) {
	case float32:
		return any(float32(f)).(T)
	default:
		return any(f).(T)
	}
}

func convertInt[T Number](i int64) T {
	var z T
	switch any(z).(type) {
	case int8:
		return any(int8(i)).(T)
	case int16:
		return any(int16(i)).(T)
	case int32:
		return any(int32(i)).(T)
	case int64:
		return any(i).(T)
	case uint8:
		return any(uint8(i)).(T)
	case uint16:
		return any(uint16(i)).(T)
	case uint32:
		return any(uint32(i)).(T)
	default:
		return any(uint64(i)).(T)
	}
}

func parserFor(z any) func([]byte) (number, error) {
	switch z.(type) {
	case float32, float64:
		return func(tok []byte) (number, error) {
			switch string(tok) {
			case "true":
				return number{f: 1}, nil
			case "false":
				return number{}, nil
			case "NaN", "nan":
				return number{f: math.NaN()}, nil
			}
			f, err := strconv.ParseFloat(string(tok), 64)
			if err != nil {
				return number{}, fmt.Errorf("%w: %q is not a number", ErrMalformed, tok)
			}
			return number{f: f}, nil
		}
	case bool:
		return func(tok []byte) (number, error) {
			switch string(tok) {
			case "true", "1":
				return number{i: 1, isInt: true}, nil
			case "false", "0":
				return number{isInt: true}, nil
			}
			return number{}, fmt.Errorf("%w: %q is not a boolean", ErrMalformed, tok)
		}
	default:
		return func(tok []byte) (number, error) {
			i, err := strconv.ParseInt(string(tok), 10, 64)
			if err != nil {
				// Accept integral floats such as 3.0, which many clients send.
				f, ferr := strconv.ParseFloat(string(tok), 64)
				if ferr != nil || f != math.Trunc(f) {
					return number{}, fmt.Errorf("%w: %q is not an integer", ErrMalformed, tok)
				}
				i = int64(f)
			}
			return number{i: i, isInt: true}, nil
		}
	}
}

// AppendJSON writes data as a JSON array nested by shape (flat when shape is nil or has one dimension).
func AppendJSON[T Number](dst []byte, data []T, shape []int64) []byte {
	if len(shape) == 0 {
		if len(data) == 1 {
			return appendElem(dst, data[0])
		}
		shape = []int64{int64(len(data))}
	}
	dst, _ = appendNested(dst, data, shape)
	return dst
}

func appendNested[T Number](dst []byte, data []T, shape []int64) ([]byte, []T) {
	dst = append(dst, '[')
	for k := int64(0); k < shape[0]; k++ {
		if k > 0 {
			dst = append(dst, ',')
		}
		if len(shape) == 1 {
			dst = appendElem(dst, data[0])
			data = data[1:]
		} else {
			dst, data = appendNested(dst, data, shape[1:])
		}
	}
	return append(dst, ']'), data
}

func appendElem[T Number](dst []byte, v T) []byte {
	switch x := any(v).(type) {
	case float32:
		return appendFloat(dst, float64(x), 32)
	case float64:
		return appendFloat(dst, x, 64)
	case bool:
		return strconv.AppendBool(dst, x)
	case int8:
		return strconv.AppendInt(dst, int64(x), 10)
	case int16:
		return strconv.AppendInt(dst, int64(x), 10)
	case int32:
		return strconv.AppendInt(dst, int64(x), 10)
	case int64:
		return strconv.AppendInt(dst, x, 10)
	case uint8:
		return strconv.AppendUint(dst, uint64(x), 10)
	case uint16:
		return strconv.AppendUint(dst, uint64(x), 10)
	case uint32:
		return strconv.AppendUint(dst, uint64(x), 10)
	case uint64:
		return strconv.AppendUint(dst, x, 10)
	}
	return dst
}

func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...) // JSON has no NaN/Inf
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

// Nest rewrites raw (a flat or nested JSON array) as a nested array of the given shape, keeping the
// element tokens as they are; it lets OIP v2 flat data reach code that expects nested lists.
func Nest(raw []byte, shape []int64) ([]byte, error) {
	var toks [][]byte
	if _, err := Walk(raw, func(tok []byte) error { toks = append(toks, tok); return nil }); err != nil {
		return nil, err
	}
	if len(shape) == 0 {
		return raw, nil
	}
	if int64(len(toks)) != Elements(shape) {
		return nil, fmt.Errorf("%w: %d elements do not fill shape %s", ErrMalformed, len(toks), ShapeString(shape))
	}
	out, _ := nestTokens(make([]byte, 0, len(raw)+2*len(shape)), toks, shape)
	return out, nil
}

func nestTokens(dst []byte, toks [][]byte, shape []int64) ([]byte, [][]byte) {
	dst = append(dst, '[')
	for k := int64(0); k < shape[0]; k++ {
		if k > 0 {
			dst = append(dst, ',')
		}
		if len(shape) == 1 {
			dst = append(dst, toks[0]...)
			toks = toks[1:]
		} else {
			dst, toks = nestTokens(dst, toks, shape[1:])
		}
	}
	return append(dst, ']'), toks
}
