import numpy as np
import pandas as pd
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.parameter_types.pandas_parameter_type import PandasParameterType
from inference_schema.parameter_types.standard_py_parameter_type import StandardPythonParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    pass


@input_schema("data", NumpyParameterType(np.array([[1.0, 2.0, 3.0]])))
@input_schema("frame", PandasParameterType(pd.DataFrame({"a": [1], "b": [2.5]})), optional=True)
@input_schema("scale", StandardPythonParameterType(2.0), optional=True)
@output_schema(StandardPythonParameterType({"sums": [6.0], "frame_rows": 1}))
def run(data, frame=None, scale=1.0):
    assert isinstance(data, np.ndarray), type(data)
    return {"sums": (data.sum(axis=1) * scale).tolist(), "frame_rows": 0 if frame is None else len(frame)}
