"""Signal model on Triton's python backend (the CPU deployment, configs/cpu.pbtxt).

Loads ``model.onnx`` from this version directory with onnxruntime (one intra-op thread: Triton runs one
instance per configured CPU instance, and the machine is shared). Each ``execute`` call gets the requests of
one dynamic batch: their ``features`` are concatenated into a single onnxruntime run and the ``probability``
rows are split back per request. The model version string (ONNX metadata ``model_version``, the same string
the client's in-process fallback reports) must equal the config's ``model_version`` parameter (which Triton
reports to clients in the model config); it is logged at load and named in every error.

Runs in the Triton venv (numpy<2), not the project's: keep it free of project imports.
"""

import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input_name = config["input"][0]["name"]
        self.output_name = config["output"][0]["name"]
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        if not os.path.isfile(path):
            raise pb_utils.TritonModelException(
                f"{path} is missing: run `python -m triton_models.train` to create it"
            )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.version = self.session.get_modelmeta().custom_metadata_map.get("model_version", "unknown")
        expected = config.get("parameters", {}).get("model_version", {}).get("string_value")
        if expected is not None and expected != self.version:
            raise pb_utils.TritonModelException(
                f"{path} is version {self.version} but the model config says {expected}: "
                "re-run `python -m triton_models.train`, which writes both"
            )
        pb_utils.Logger.log_info(f"signal model {self.version} loaded from {path} (onnxruntime {ort.__version__})")

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, self.input_name).as_numpy() for r in requests]
        sizes = [a.shape[0] for a in arrays]
        batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)
        try:
            out = self.session.run([self.output_name], {self.input_name: batch.astype(np.float32, copy=False)})[0]
        except Exception as ex:  # noqa: BLE001 - every request must get an answer
            error = pb_utils.TritonError(f"signal model {self.version}: onnxruntime failed: {ex}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for n in sizes:
            part = np.ascontiguousarray(out[start : start + n], dtype=np.float32)
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor(self.output_name, part)]))
            start += n
        return responses

    def finalize(self):
        self.session = None
