"""@input_schema and @output_schema, compatible with inference-schema's, recording the schema for mlship."""
import functools
import inspect


def _wrap(user_run, inputs, output, convert):
    inner = getattr(user_run, "__mlship_inner__", user_run)

    @functools.wraps(user_run)
    def wrapper(*args, **kwargs):
        # Called directly (e.g. by the user's own tests): convert like inference-schema does.
        if convert and inputs:
            names = list(inspect.signature(inner).parameters)
            args = list(args)
            for name, ptype in inputs.items():
                if name in kwargs:
                    kwargs[name] = ptype.deserialize_input(kwargs[name])
                elif name in names and names.index(name) < len(args):
                    i = names.index(name)
                    args[i] = ptype.deserialize_input(args[i])
        return user_run(*args, **kwargs)

    wrapper.__mlship_inner__ = inner
    wrapper.__mlship_inputs__ = inputs
    wrapper.__mlship_output__ = output
    wrapper.__mlship_rawhttp__ = getattr(user_run, "__mlship_rawhttp__", False)
    return wrapper


def input_schema(param_name, param_type, convert_to_provided_type=True, optional=False):
    """Declares that run()'s parameter param_name is described (and converted) by param_type."""
    if optional:
        param_type._mlship_optional = True

    def decorator(user_run):
        inputs = dict(getattr(user_run, "__mlship_inputs__", None) or {})
        inputs[param_name] = param_type
        inner = getattr(user_run, "__mlship_inner__", user_run)
        if param_name not in inspect.signature(inner).parameters:
            raise ValueError("input_schema: %s() has no parameter %r" % (inner.__name__, param_name))
        return _wrap(user_run, inputs, getattr(user_run, "__mlship_output__", None), convert_to_provided_type)

    return decorator


def output_schema(output_type):
    """Declares the shape of run()'s result (used for swagger only)."""

    def decorator(user_run):
        return _wrap(user_run, dict(getattr(user_run, "__mlship_inputs__", None) or {}), output_type, False)

    return decorator
