"""Model.get_model_path, the one azureml-core call entry scripts make at scoring time."""
import os


class Model:
    @staticmethod
    def get_model_path(model_name, version=None, _workspace=None):
        root = os.environ.get("AZUREML_MODEL_DIR", ".")
        # Several models are mounted as ROOT/NAME/VERSION; one model is ROOT itself.
        candidates = []
        if version is not None:
            candidates.append(os.path.join(root, model_name, str(version)))
        candidates += [os.path.join(root, model_name), root]
        for c in candidates:
            if os.path.exists(c):
                if os.path.isdir(c) and c != root:
                    versions = sorted((d for d in os.listdir(c) if d.isdigit()), key=int)
                    if version is None and versions:
                        return os.path.join(c, versions[-1])
                return c
        raise FileNotFoundError("model %r not found under %s" % (model_name, root))
