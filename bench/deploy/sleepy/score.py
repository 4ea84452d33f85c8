# A model that takes 50 ms per request, for the autoscaler benchmark.
import time


def init():
    pass


def run(raw_data):
    time.sleep(0.05)
    return {"ok": True}
