# Times run() called in-process (no server): the floor a served model is compared against.
# Usage: inprocess.py SCORE_PY MODEL_DIR BODY N  -> prints JSON {"p50_us", "rps"}
import importlib.util
import json
import os
import sys
import time

entry, model_dir, body, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
os.environ["AZUREML_MODEL_DIR"] = model_dir
sys.path.insert(0, os.path.dirname(entry))
spec = importlib.util.spec_from_file_location("score", entry)
score = importlib.util.module_from_spec(spec)
spec.loader.exec_module(score)
score.init()
for _ in range(min(n, 1000)):
    json.dumps(score.run(body))
lat = []
start = time.perf_counter()
for _ in range(n):
    t = time.perf_counter()
    json.dumps(score.run(body))  # the server JSON-encodes the result too
    lat.append(time.perf_counter() - t)
total = time.perf_counter() - start
lat.sort()
print(json.dumps({"p50_us": lat[len(lat) // 2] * 1e6, "rps": n / total}))
