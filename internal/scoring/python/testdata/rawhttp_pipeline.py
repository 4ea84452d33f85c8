# @rawhttp entry script for the pipelining tests: request headers say what run() does.
import os
import time
from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    if request.headers.get("X-Log"):
        with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "log"), "a") as f:
            f.write("%s %d\n" % (request.headers["X-Log"], os.getpid()))
    if request.headers.get("X-Sleep"):
        time.sleep(float(request.headers["X-Sleep"]))
    if request.headers.get("X-Int-Header"):
        return AMLResponse("ok", 200, {"X-Count": 5})
    n = int(request.headers.get("X-Big", "0") or 0)
    return AMLResponse("x" * n if n else "ok", 200)
