# The baseline: Azure ML's inference server design (Flask under gunicorn sync workers) hosting an
# unchanged entry script. gunicorn imports this module in each worker, so init() runs per worker.
# Env: ENTRY_SCRIPT (path to score.py), AZUREML_MODEL_DIR.
import importlib.util
import json
import os
import sys

from flask import Flask, Response, request

entry = os.environ["ENTRY_SCRIPT"]
sys.path.insert(0, os.path.dirname(entry))
spec = importlib.util.spec_from_file_location("score", entry)
score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(score)
score.init()

app = Flask(__name__)


@app.route("/", methods=["GET"])
def health():
    return "Healthy"


@app.route("/score", methods=["POST"])
def run():
    try:
        out = score.run(request.get_data(as_text=True))
    except Exception as e:
        return Response(str(e), status=500)
    return Response(json.dumps(out), mimetype="application/json")
