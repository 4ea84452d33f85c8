# Trains the example model: logistic regression on the iris data set that ships with scikit-learn.
# Usage: /usr/bin/python3 examples/sklearn/train.py [OUTPUT_DIR]   (default: examples/sklearn/model)
import os
import pickle
import sys

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "model")
    os.makedirs(out, exist_ok=True)
    x, y = load_iris(return_X_y=True)
    model = LogisticRegression(max_iter=1000).fit(x, y)
    path = os.path.join(out, "model.pkl")
    with open(path, "wb") as f:
        pickle.dump(model, f)
    print("wrote", path, "training accuracy %.3f" % model.score(x, y))


if __name__ == "__main__":
    main()
