# The same model with inference_schema decorators: mlship converts the input to a numpy array,
# answers 400 for input of the wrong shape, and generates /swagger.json from the samples.
#   mlship score --model-dir examples/sklearn/model --entry-script score_schema.py --source-dir examples/sklearn
import os
import pickle

import numpy as np
from inference_schema.parameter_types.numpy_parameter_type import NumpyParameterType
from inference_schema.schema_decorators import input_schema, output_schema


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"), "rb") as f:
        model = pickle.load(f)


@input_schema("data", NumpyParameterType(np.array([[5.1, 3.5, 1.4, 0.2]])))
@output_schema(NumpyParameterType(np.array([0])))
def run(data):
    return model.predict(data).tolist()
