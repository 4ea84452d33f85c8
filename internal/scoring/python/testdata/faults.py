# Entry script for fault tests: the request says what run() should do.
import json
import os
import signal
import sys
import time

calls = 0


def init():
    global model
    print("init in", os.getcwd(), "model dir", os.environ["AZUREML_MODEL_DIR"])
    if os.environ.get("FAULTS_INIT_RAISE"):
        raise RuntimeError("cannot load model: " + os.environ["FAULTS_INIT_RAISE"])
    if os.environ.get("FAULTS_INIT_SLEEP"):
        time.sleep(float(os.environ["FAULTS_INIT_SLEEP"]))
    model = "ready"


def run(raw_data):
    global calls
    calls += 1
    req = json.loads(raw_data)
    if "sleep" in req:
        time.sleep(req["sleep"])
    if "raise" in req:
        raise ValueError(req["raise"])
    if "kill" in req:
        os.kill(os.getpid(), signal.SIGKILL)
    if "exit" in req:
        sys.exit(3)
    if "print" in req:
        print(req["print"])  # must land in the log, not in the protocol
        print("\x00\x00\x00\x05J{bad", flush=True)
    if "env" in req:
        return {e: os.environ.get(e) for e in req["env"]}
    if "str" in req:
        return req["str"]
    if "frozen" in req:
        import gc
        return {"frozen": gc.get_freeze_count()}
    if "unserializable" in req:
        return object()
    if "aml" in req:
        from azureml.contrib.services.aml_response import AMLResponse
        headers = {"X-Why": "asked", "X-Count": 5}
        headers.update(req.get("headers", {}))
        return AMLResponse({"because": req["aml"]}, 418, headers, json_str=True)
    if "convert" in req:
        return {"set": {3}, "bytes": b"hi", "tuple": (1, 2)}
    return {"echo": req.get("echo"), "pid": os.getpid(), "calls": calls, "model": model, "path0": sys.path[0]}
