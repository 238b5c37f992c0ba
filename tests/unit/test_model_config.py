"""The signal model's Triton configs, ONNX file and metrics agree with each other and with the features."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from processors.features import FEATURE_NAMES, N_FEATURES
from streams.config import TritonSettings
from triton_models.train import HORIZON, INPUT_NAME, OUTPUT_NAME, stamp_config

MODEL_DIR = Path(__file__).resolve().parents[2] / "triton_models" / "signal"


def _parse(path: Path) -> mc.ModelConfig:
    config = mc.ModelConfig()
    text_format.Parse(path.read_text(), config)
    return config


@pytest.fixture(scope="module")
def gpu() -> mc.ModelConfig:
    return _parse(MODEL_DIR / "config.pbtxt")


@pytest.fixture(scope="module")
def cpu() -> mc.ModelConfig:
    return _parse(MODEL_DIR / "configs" / "cpu.pbtxt")


def test_both_configs_share_the_interface(gpu: mc.ModelConfig, cpu: mc.ModelConfig) -> None:
    assert gpu.name == cpu.name == "signal"
    assert list(gpu.input) == list(cpu.input)
    assert list(gpu.output) == list(cpu.output)
    assert gpu.max_batch_size == cpu.max_batch_size > 0
    (inp,) = gpu.input
    (out,) = gpu.output
    assert (inp.name, inp.data_type, list(inp.dims)) == (INPUT_NAME, mc.TYPE_FP32, [N_FEATURES])
    assert (out.name, out.data_type, list(out.dims)) == (OUTPUT_NAME, mc.TYPE_FP32, [1])


def test_gpu_config_is_onnxruntime_on_gpu_with_tensorrt_fp16(gpu: mc.ModelConfig) -> None:
    assert gpu.backend == "onnxruntime"
    assert gpu.default_model_filename == "model.onnx"
    assert [g.kind for g in gpu.instance_group] == [mc.ModelInstanceGroup.KIND_GPU]
    (accel,) = gpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert accel.name == "tensorrt"
    assert accel.parameters["precision_mode"] == "FP16"
    assert gpu.HasField("dynamic_batching")
    assert gpu.dynamic_batching.max_queue_delay_microseconds > 0
    assert all(0 < b <= gpu.max_batch_size for b in gpu.dynamic_batching.preferred_batch_size)


def test_cpu_config_is_the_python_backend_on_cpu(cpu: mc.ModelConfig) -> None:
    assert cpu.backend == "python"
    assert [g.kind for g in cpu.instance_group] == [mc.ModelInstanceGroup.KIND_CPU]
    assert not cpu.optimization.execution_accelerators.gpu_execution_accelerator
    assert cpu.HasField("dynamic_batching")
    assert cpu.dynamic_batching.max_queue_delay_microseconds > 0
    assert all(0 < b <= cpu.max_batch_size for b in cpu.dynamic_batching.preferred_batch_size)
    assert (MODEL_DIR / "1" / "model.py").is_file()


def test_stamping_the_version_is_idempotent(tmp_path: Path) -> None:
    config = tmp_path / "config.pbtxt"
    config.write_text((MODEL_DIR / "configs" / "cpu.pbtxt").read_text())
    stamp_config(config, "v-test")
    once = config.read_text()
    stamp_config(config, "v-test")
    assert config.read_text() == once
    assert _parse(config).parameters["model_version"].string_value == "v-test"
    stamp_config(config, "v-other")
    assert once.count("model_version") == config.read_text().count("model_version")


def test_client_batches_fit_the_server(cpu: mc.ModelConfig) -> None:
    assert TritonSettings().max_batch <= cpu.max_batch_size


def test_onnx_model_matches_the_configs() -> None:
    model = onnx.load(str(MODEL_DIR / "1" / "model.onnx"))
    onnx.checker.check_model(model)
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == INPUT_NAME and inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in inp.type.tensor_type.shape.dim] == [0, N_FEATURES]  # [-1, F]
    assert out.name == OUTPUT_NAME and out.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_value for d in out.type.tensor_type.shape.dim] == [0, 1]  # [-1, 1]
    assert (MODEL_DIR / "1" / "model.onnx").stat().st_size < 64 * 1024


def test_metrics_describe_the_committed_model() -> None:
    metrics = json.loads((MODEL_DIR / "metrics.json").read_text())
    meta = {p.key: p.value for p in onnx.load(str(MODEL_DIR / "1" / "model.onnx")).metadata_props}
    assert meta["model_version"] == metrics["model_version"]
    assert meta["feature_names"].split(",") == metrics["feature_names"] == list(FEATURE_NAMES)
    assert int(meta["horizon"]) == metrics["horizon_bars"] == HORIZON
    for config in (_parse(MODEL_DIR / "config.pbtxt"), _parse(MODEL_DIR / "configs" / "cpu.pbtxt")):
        assert config.parameters["model_version"].string_value == metrics["model_version"]
    assert len(metrics["data"]["sha256"]) == 64
    for split in ("BTC-PERP", "GBPUSD", "all"):
        assert {"auc", "accuracy", "baseline_accuracy", "hit_rate"} <= set(metrics["test"][split])
