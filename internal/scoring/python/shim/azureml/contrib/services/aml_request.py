"""@rawhttp and AMLRequest: a run() that receives the whole HTTP request, as in azureml-contrib-services."""


class AMLRequest:
    """Type of the request a @rawhttp run() receives (method, headers, args, get_data(), get_json())."""


def rawhttp(user_run):
    user_run.__mlship_rawhttp__ = True
    return user_run
