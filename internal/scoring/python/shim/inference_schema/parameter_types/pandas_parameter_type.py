"""PandasParameterType: a DataFrame input, converted from JSON in the given orient (records by default)."""
from .abstract_parameter_type import AbstractParameterType, swagger_for_dtype


class PandasParameterType(AbstractParameterType):
    def __init__(self, sample_input, enforce_column_type=True, enforce_shape=True, apply_column_names=False, orient="records"):
        import pandas as pd

        if not isinstance(sample_input, pd.DataFrame):
            raise ValueError("PandasParameterType needs a pandas.DataFrame sample, got %s" % type(sample_input).__name__)
        if orient not in ("records", "split", "index", "columns", "values", "table"):
            raise ValueError("unsupported orient %r" % orient)
        super().__init__(sample_input)
        self.enforce_column_type = enforce_column_type
        self.enforce_shape = enforce_shape
        self.apply_column_names = apply_column_names
        self.orient = orient

    def deserialize_input(self, input_data):
        import json

        import pandas as pd

        if isinstance(input_data, pd.DataFrame):
            return input_data
        if self.orient == "records" and not isinstance(input_data, list):
            raise ValueError("expected a JSON array of records, got %s" % type(input_data).__name__)
        df = pd.read_json(json.dumps(input_data), orient=self.orient, dtype=False)
        if self.apply_column_names:
            df.columns = self.sample_input.columns[: len(df.columns)]
        if self.enforce_shape and df.shape[1] != self.sample_input.shape[1]:
            raise ValueError("expected %d columns %s, got %d" % (self.sample_input.shape[1], list(self.sample_input.columns), df.shape[1]))
        if self.enforce_column_type:
            missing = [c for c in self.sample_input.columns if c not in df.columns]
            if missing:
                raise ValueError("missing columns %s" % missing)
            df = df[list(self.sample_input.columns)].astype(self.sample_input.dtypes.to_dict())
        return df

    def input_to_swagger(self):
        props = {str(c): swagger_for_dtype(t) for c, t in self.sample_input.dtypes.items()}
        example = json_records(self.sample_input)
        if self.orient != "records":
            import json

            example = json.loads(self.sample_input.to_json(orient=self.orient, date_format="iso"))
        return {
            "type": "array" if self.orient in ("records", "values") else "object",
            "items": {"type": "object", "required": list(props), "properties": props},
            "format": "pandas.DataFrame:" + self.orient,
            "example": example,
        }


def json_records(df):
    import json

    return json.loads(df.to_json(orient="records", date_format="iso"))
