"""mlship's stand-in for the inference-schema package: the decorators and parameter types Azure ML entry scripts use."""
