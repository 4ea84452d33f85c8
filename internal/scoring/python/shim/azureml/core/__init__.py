# Merge with a real azureml package on sys.path, if any, instead of hiding it.
__path__ = __import__("pkgutil").extend_path(__path__, __name__)
