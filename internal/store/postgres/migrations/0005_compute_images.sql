-- What a Kubernetes target's replicas are built from and where they may run.
ALTER TABLE computes ADD COLUMN python_image TEXT NOT NULL DEFAULT '';
ALTER TABLE computes ADD COLUMN onnx_image TEXT NOT NULL DEFAULT '';
ALTER TABLE computes ADD COLUMN node_selector TEXT NOT NULL DEFAULT '';
