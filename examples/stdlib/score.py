# A scoring script that needs nothing but the Python standard library: a linear model whose
# weights live in the model folder (AZUREML_MODEL_DIR/weights.json).
#   mlship score --model-dir examples/stdlib/model --entry-script score.py --source-dir examples/stdlib
#   curl -d '{"data": [[1, 2, 3]]}' http://127.0.0.1:PORT/score
import json
import os


def init():
    global weights, bias
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "weights.json")) as f:
        m = json.load(f)
    weights, bias = m["weights"], m["bias"]


def run(raw_data):
    rows = json.loads(raw_data)["data"]
    return {"predictions": [sum(w * x for w, x in zip(weights, row)) + bias for row in rows]}
