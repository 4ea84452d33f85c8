"""NumpyParameterType: a numpy array input, converted from nested JSON lists."""
from .abstract_parameter_type import AbstractParameterType, swagger_for_dtype, to_plain


class NumpyParameterType(AbstractParameterType):
    def __init__(self, sample_input, enforce_column_type=True, enforce_shape=True):
        import numpy as np

        if not isinstance(sample_input, np.ndarray):
            raise ValueError("NumpyParameterType needs a numpy.ndarray sample, got %s" % type(sample_input).__name__)
        super().__init__(sample_input)
        self.enforce_column_type = enforce_column_type
        self.enforce_shape = enforce_shape

    def deserialize_input(self, input_data):
        import numpy as np

        if isinstance(input_data, np.ndarray):
            return input_data
        if not isinstance(input_data, list):
            raise ValueError("expected a (nested) JSON array, got %s" % type(input_data).__name__)
        dtype = self.sample_input.dtype if self.enforce_column_type else None
        if dtype is not None and dtype.names:
            arr = np.array([tuple(r) if isinstance(r, list) else tuple(r[n] for n in dtype.names) for r in input_data], dtype=dtype)
        else:
            arr = np.array(input_data, dtype=dtype)
        if arr.dtype == object:
            raise ValueError("input is a ragged array")
        if self.enforce_shape:
            want = self.sample_input.shape
            if arr.ndim != len(want) or arr.shape[1:] != want[1:]:
                expected = "(-1" + "".join(", %d" % d for d in want[1:]) + (",)" if len(want) == 1 else ")")
                raise ValueError("expected shape %s, got %s" % (expected, tuple(arr.shape)))
        return arr

    def input_to_swagger(self):
        dtype = self.sample_input.dtype
        if dtype.names:
            item = {"type": "object", "properties": {n: swagger_for_dtype(dtype.fields[n][0]) for n in dtype.names}}
        else:
            item = swagger_for_dtype(dtype)
        schema = item
        for _ in range(self.sample_input.ndim):
            schema = {"type": "array", "items": schema}
        schema = dict(schema)
        schema["format"] = "numpy.ndarray"
        schema["example"] = to_plain(self.sample_input)
        return schema
