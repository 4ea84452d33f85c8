from azureml.contrib.services.aml_request import AMLRequest, rawhttp
from azureml.contrib.services.aml_response import AMLResponse


def init():
    pass


@rawhttp
def run(request):
    if request.method == "GET":
        return AMLResponse("got " + request.args.get("q", ""), 200)
    if request.headers.get("X-Fail"):
        return AMLResponse({"error": "asked to fail"}, 418, {"X-Why": "header"}, json_str=True)
    return AMLResponse(request.get_data(as_text=True).upper(), 201)
