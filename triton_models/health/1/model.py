"""Echo model: OUTPUT = INPUT. Runs in Triton's python backend (the local stack's health check)."""

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            # Copy: the input array is a view into the request's shared memory.
            data = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy().copy()
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("OUTPUT", data)]))
        return responses
