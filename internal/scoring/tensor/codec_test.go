package tensor

import (
	"errors"
	"reflect"
	"testing"
)

func TestParseShapes(t *testing.T) {
	tests := []struct {
		in    string
		data  []float32
		shape []int64
	}{
		{"[[1,2],[3,4]]", []float32{1, 2, 3, 4}, []int64{2, 2}},
		{" [ 1.5 , -2e3 ] ", []float32{1.5, -2000}, []int64{2}},
		{"7", []float32{7}, nil},
		{"[[[1],[2]]]", []float32{1, 2}, []int64{1, 2, 1}},
		{"[]", nil, []int64{0}},
	}
	for _, tt := range tests {
		data, shape, err := Parse[float32]([]byte(tt.in), nil)
		if err != nil {
			t.Fatalf("Parse(%s): %v", tt.in, err)
		}
		if !reflect.DeepEqual(data, tt.data) || !reflect.DeepEqual(shape, tt.shape) {
			t.Errorf("Parse(%s) = %v %v, want %v %v", tt.in, data, shape, tt.data, tt.shape)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, in := range []string{"[[1,2],[3]]", "[[1],2]", "[1,[2]]", `["a"]`, "[1,2", "[1 2]", "", "[1]x", "{}"} {
		if _, _, err := Parse[float64]([]byte(in), nil); !errors.Is(err, ErrMalformed) {
			t.Errorf("Parse(%q) err = %v, want ErrMalformed", in, err)
		}
	}
	if _, _, err := Parse[int64]([]byte("[1.5]"), nil); !errors.Is(err, ErrMalformed) {
		t.Errorf("int parse of 1.5: %v", err)
	}
	if d, _, err := Parse[int64]([]byte("[9007199254740993, 3.0]"), nil); err != nil || d[0] != 9007199254740993 || d[1] != 3 {
		t.Errorf("int parse: %v %v", d, err)
	}
}

func TestAppendJSONRoundTrip(t *testing.T) {
	in := []float64{1, 2.5, 3, 4, 5, 6}
	out := AppendJSON(nil, in, []int64{2, 3})
	if string(out) != "[[1,2.5,3],[4,5,6]]" {
		t.Fatalf("got %s", out)
	}
	back, shape, err := Parse[float64](out, nil)
	if err != nil || !reflect.DeepEqual(back, in) || !reflect.DeepEqual(shape, []int64{2, 3}) {
		t.Fatalf("round trip: %v %v %v", back, shape, err)
	}
	if got := string(AppendJSON(nil, []bool{true, false}, []int64{2})); got != "[true,false]" {
		t.Errorf("bools: %s", got)
	}
}

func TestNest(t *testing.T) {
	got, err := Nest([]byte("[1,2,3,4,5,6]"), []int64{3, 2})
	if err != nil || string(got) != "[[1,2],[3,4],[5,6]]" {
		t.Fatalf("Nest = %s, %v", got, err)
	}
	if _, err := Nest([]byte("[1,2,3]"), []int64{2, 2}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Nest mismatch err = %v", err)
	}
}

func TestCompatible(t *testing.T) {
	if !Compatible([]int64{-1, 4}, []int64{10, 4}) || Compatible([]int64{-1, 4}, []int64{10, 3}) || Compatible([]int64{4}, []int64{1, 4}) {
		t.Fatal("Compatible wrong")
	}
}
