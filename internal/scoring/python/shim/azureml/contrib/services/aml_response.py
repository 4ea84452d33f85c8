"""AMLResponse: an entry script's raw HTTP response (status, headers, body), as in azureml-contrib-services."""
import json


class AMLResponse:
    def __init__(self, message, status_code=200, response_headers=None, json_str=False):
        self.status_code = int(status_code)
        self.headers = dict(response_headers or {})
        if json_str:
            self.mimetype = "application/json"
            self.data = json.dumps(message).encode()
        else:
            # Flask's default response type, which Azure's AMLResponse inherits.
            self.mimetype = "text/html; charset=utf-8"
            if isinstance(message, bytes):
                self.data = message
            else:
                self.data = str(message).encode()

    def get_data(self, as_text=False):
        return self.data.decode() if as_text else self.data

    def _mlship_encode(self):
        # Header values become strings, as Flask's response headers make them.
        headers = {str(k): str(v) for k, v in self.headers.items()}
        return self.data, {
            "status": self.status_code,
            "headers": headers,
            "content_type": headers.pop("Content-Type", self.mimetype),
        }
