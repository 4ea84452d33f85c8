# Azure ML entry script for the scikit-learn example (train it first with train.py).
#   mlship score --model-dir examples/sklearn/model --entry-script score.py --source-dir examples/sklearn
#   curl -d '{"data": [[5.1, 3.5, 1.4, 0.2]]}' http://127.0.0.1:PORT/score
import json
import os
import pickle

import numpy as np


def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.pkl"), "rb") as f:
        model = pickle.load(f)


def run(raw_data):
    data = np.array(json.loads(raw_data)["data"], dtype=np.float64)
    return model.predict(data).tolist()
