# Writes the ONNX example: a 4-16-3 multilayer perceptron with fixed random weights
# (input "input" float32 [batch, 4], output "probabilities" float32 [batch, 3]).
# Needs Debian python3-onnx and python3-numpy.
# Usage: /usr/bin/python3 examples/onnx/make_model.py [OUTPUT_FILE]   (default: examples/onnx/model/model.onnx)
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(os.path.abspath(__file__)), "model", "model.onnx")
    rng = np.random.default_rng(7)
    w1 = rng.normal(size=(4, 16)).astype(np.float32)
    b1 = rng.normal(size=(16,)).astype(np.float32)
    w2 = rng.normal(size=(16, 3)).astype(np.float32)
    b2 = rng.normal(size=(3,)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Gemm", ["input", "w1", "b1"], ["h"]),
            helper.make_node("Relu", ["h"], ["hr"]),
            helper.make_node("Gemm", ["hr", "w2", "b2"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "mlp",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        initializer=[numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (b1, "b1"), (w2, "w2"), (b2, "b2"))],
    )
    model = helper.make_model(graph, producer_name="mlship-example", opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    onnx.save(model, out)
    print("wrote", out)


if __name__ == "__main__":
    main()
