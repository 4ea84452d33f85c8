"""Base class of the parameter types, and the swagger mapping of Python/numpy scalar types."""


class AbstractParameterType:
    def __init__(self, sample_input):
        self.sample_input = sample_input

    def deserialize_input(self, input_data):
        raise NotImplementedError

    def input_to_swagger(self):
        raise NotImplementedError


def swagger_for_value(value):
    """Swagger 2.0 schema for a plain Python value, following inference-schema's choices."""
    if isinstance(value, bool):
        return {"type": "boolean"}
    if isinstance(value, int):
        return {"type": "integer", "format": "int64"}
    if isinstance(value, float):
        return {"type": "number", "format": "double"}
    if isinstance(value, str):
        return {"type": "string"}
    if isinstance(value, dict):
        props = {}
        for k, v in value.items():
            props[k] = v.input_to_swagger() if isinstance(v, AbstractParameterType) else swagger_for_value(v)
        return {"type": "object", "required": list(value.keys()), "properties": props}
    if isinstance(value, (list, tuple)):
        schema = {"type": "array"}
        if value:
            v = value[0]
            schema["items"] = v.input_to_swagger() if isinstance(v, AbstractParameterType) else swagger_for_value(v)
        return schema
    if value is None:
        return {"type": "object"}
    if hasattr(value, "dtype") and hasattr(value, "item"):
        return swagger_for_dtype(value.dtype)
    return {"type": "object"}


def swagger_for_dtype(dtype):
    kind = dtype.kind
    if kind == "b":
        return {"type": "boolean"}
    if kind in "iu":
        return {"type": "integer", "format": "int64" if dtype.itemsize >= 8 else "int32"}
    if kind == "f":
        return {"type": "number", "format": "double" if dtype.itemsize >= 8 else "float"}
    if kind in "US":
        return {"type": "string"}
    if kind == "M":
        return {"type": "string", "format": "date-time"}
    return {"type": "object"}


def to_plain(value):
    """A JSON-encodable copy of a sample value (for swagger examples)."""
    if isinstance(value, AbstractParameterType):
        return to_plain(value.sample_input)
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
