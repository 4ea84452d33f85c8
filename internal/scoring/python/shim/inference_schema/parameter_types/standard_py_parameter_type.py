"""StandardPythonParameterType: plain JSON values, optionally a dict or list of other parameter types."""
from .abstract_parameter_type import AbstractParameterType, swagger_for_value, to_plain


class StandardPythonParameterType(AbstractParameterType):
    def __init__(self, sample_input):
        super().__init__(sample_input)

    def deserialize_input(self, input_data):
        sample = self.sample_input
        if isinstance(sample, dict):
            if not isinstance(input_data, dict):
                raise ValueError("expected a JSON object, got %s" % type(input_data).__name__)
            out = dict(input_data)
            for k, v in sample.items():
                if isinstance(v, AbstractParameterType) and k in out:
                    out[k] = v.deserialize_input(out[k])
            return out
        if isinstance(sample, (list, tuple)):
            if not isinstance(input_data, list):
                raise ValueError("expected a JSON array, got %s" % type(input_data).__name__)
            if sample and isinstance(sample[0], AbstractParameterType):
                return [sample[0].deserialize_input(x) for x in input_data]
            return input_data
        if isinstance(sample, bool):
            if not isinstance(input_data, bool):
                raise ValueError("expected a boolean, got %r" % (input_data,))
            return input_data
        if isinstance(sample, (int, float)):
            if isinstance(input_data, bool) or not isinstance(input_data, (int, float)):
                raise ValueError("expected a number, got %r" % (input_data,))
            return type(sample)(input_data) if isinstance(sample, float) else input_data
        if isinstance(sample, str) and not isinstance(input_data, str):
            raise ValueError("expected a string, got %r" % (input_data,))
        return input_data

    def input_to_swagger(self):
        schema = swagger_for_value(self.sample_input)
        schema["format"] = schema.get("format") or "python." + type(self.sample_input).__name__
        schema["example"] = to_plain(self.sample_input)
        return schema
