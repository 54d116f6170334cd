"""TensorRT 10 backend: engine built from the bundle's ONNX on first use, cached on disk (engine_cache.py), run
with pre-allocated device buffers, set_tensor_address and execute_async_v3 on one CUDA stream.

Needs the `tensorrt` Python package (TensorRT 10.x; JetPack 6 ships 10.3) and cuda-python for device memory.
Precision: fp32 bundles build FP32 engines unless fp16=True is asked; fp16 bundles set the FP16 flag; int8
bundles are QDQ graphs (explicit quantization, no calibrator), built with the INT8 + FP16 flags; int4 bundles
(opset 21, block INT4 DequantizeLinear in front of the Linear MatMuls, convolutions float) build with FP16 and
TensorRT takes the INT4 weights from the graph (weight-only; there is no INT4 convolution).
TensorRT 8.x (Jetson Nano, JetPack 4.6) is not supported by this module: it lacks the name-based tensor API.
"""
from __future__ import annotations

import hashlib

from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle, sha256_file
from .base import Backend, BackendError, BackendUnavailable, log
from .engine_cache import EngineCache, default_cache_dir


def import_tensorrt():
    """(tensorrt module, cudart module) or BackendUnavailable saying what is missing."""
    try:
        import tensorrt as trt
    except ImportError as err:
        raise BackendUnavailable(f"tensorrt backend needs the TensorRT 10 Python package `tensorrt` ({err}); "
                                 "on a Jetson it comes with JetPack (python3-libnvinfer)") from None
    if int(trt.__version__.split(".")[0]) < 10:
        raise BackendUnavailable(f"tensorrt backend needs TensorRT >= 10, found {trt.__version__}")
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError as err:
            raise BackendUnavailable(f"tensorrt backend needs cuda-python for device buffers ({err})") from None
    return trt, cudart


def gpu_available() -> bool:
    """True if tensorrt + cuda-python import and a CUDA device is visible."""
    try:
        _, cudart = import_tensorrt()
    except BackendUnavailable:
        return False
    err, count = cudart.cudaGetDeviceCount()
    return _ok(cudart, err) and count > 0


def _ok(cudart, err) -> bool:
    return err == cudart.cudaError_t.cudaSuccess


def _check(cudart, result, what: str):
    """cuda-python calls return (err, *values): raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if not _ok(cudart, err):
        raise BackendError(f"CUDA error in {what}: {err}")
    return values[0] if len(values) == 1 else values


class _Engine:
    """One deserialized engine with its context, stream and device buffers sized for max_batch."""

    def __init__(self, trt, cudart, engine, max_batch: int):
        self.trt, self.cudart, self.engine = trt, cudart, engine
        self.context = engine.create_execution_context()
        if self.context is None:
            raise BackendError("TensorRT could not create an execution context")
        self.stream = _check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.inputs, self.outputs, self.buffers, self.dtypes, self.sample_shapes = [], [], {}, {}, {}
        for i in range(engine.num_io_tensors):
            name = engine.get_tensor_name(i)
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs).append(name)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            # The profile's max shape bounds every tensor; batch is axis 0 everywhere in our graphs.
            shape = tuple(engine.get_tensor_profile_shape(name, 0)[2]) if is_input else tuple(
                engine.get_tensor_shape(name))
            sample = tuple(int(d) for d in shape[1:])
            if any(d < 0 for d in sample):
                raise BackendError(f"TensorRT tensor {name} has dynamic dims {shape}: only the batch may vary")
            self.dtypes[name], self.sample_shapes[name] = dtype, sample
            nbytes = max_batch * int(np.prod(sample)) * dtype.itemsize
            self.buffers[name] = _check(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc")
            self.context.set_tensor_address(name, int(self.buffers[name]))
        self.max_batch = max_batch

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        cudart = self.cudart
        batch = next(iter(feeds.values())).shape[0]
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        for name in self.inputs:
            host = np.ascontiguousarray(feeds[name], dtype=self.dtypes[name])
            self.context.set_input_shape(name, host.shape)
            _check(cudart, cudart.cudaMemcpyAsync(self.buffers[name], host.ctypes.data, host.nbytes, h2d,
                                                  self.stream), "cudaMemcpyAsync H2D")
        if not self.context.execute_async_v3(stream_handle=int(self.stream)):  # cudaStream_t -> raw handle
            raise BackendError("TensorRT execute_async_v3 failed")
        results = {}
        for name in self.outputs:
            shape = tuple(self.context.get_tensor_shape(name))
            host = np.empty(shape, self.dtypes[name])
            _check(cudart, cudart.cudaMemcpyAsync(host.ctypes.data, self.buffers[name], host.nbytes, d2h,
                                                  self.stream), "cudaMemcpyAsync D2H")
            results[name] = host
        _check(cudart, cudart.cudaStreamSynchronize(self.stream), "cudaStreamSynchronize")
        assert all(r.shape[0] == batch for r in results.values())
        return results

    def close(self) -> None:
        for pointer in self.buffers.values():
            self.cudart.cudaFree(pointer)
        self.buffers.clear()
        self.cudart.cudaStreamDestroy(self.stream)
        self.context = None
        self.engine = None


class TensorRTBackend(Backend):
    """Options: max_batch (optimization profile 1..max_batch, default 8; larger batches run in chunks),
    fp16 (allow FP16 kernels for fp32 bundles too, default True), workspace_mb (builder memory pool, default 256),
    cache_dir (default beside the bundle)."""

    name = "tensorrt"

    def __init__(self, bundle: Bundle, device: str = "cuda:0", *, max_batch: int = 8, fp16: bool = True,
                 workspace_mb: int = 256, cache_dir: str | Path | None = None):
        super().__init__(bundle, device)
        if self.device_kind != "cuda":
            raise BackendUnavailable(f"tensorrt backend runs on a GPU; device {device!r} asked for")
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if bundle.meta.get("quantization", {}).get("target") == "cpu":  # uint8 asymmetric Q/DQ: TensorRT takes int8
            raise BackendUnavailable(f"{bundle.name}: its INT8 graph is built for onnxruntime CPU (asymmetric uint8 "
                                     "activations, which TensorRT rejects); use the *_int8_tensorrt bundle")
        self.trt, self.cudart = import_tensorrt()
        _check(self.cudart, self.cudart.cudaSetDevice(self.device_index), f"cudaSetDevice({self.device_index})")
        props = _check(self.cudart, self.cudart.cudaGetDeviceProperties(self.device_index), "device properties")
        name = props.name
        self.gpu_name = (name.decode() if isinstance(name, bytes) else str(name)).rstrip("\x00")
        self.max_batch = max_batch
        self.build_precision = self._build_precision(bundle.precision, fp16)
        self.workspace_bytes = int(workspace_mb) << 20
        self._logger = self.trt.Logger(self.trt.Logger.WARNING)
        self._runtime = self.trt.Runtime(self._logger)
        self.cache = EngineCache(Path(cache_dir) if cache_dir else default_cache_dir(bundle.path))
        self._encoder = self._engine("encoder", bundle.encoder_path)
        log.info("tensorrt encoder engine: %s (%s)", self.cache.last_event, self.cache.directory)
        self._decoder = None

    @staticmethod
    def _build_precision(bundle_precision: str, fp16: bool) -> str:
        if bundle_precision == "int8":
            return "int8"
        if bundle_precision in ("fp16", "int4") or fp16:
            return "fp16"
        return "fp32"

    def _engine(self, graph: str, onnx_path: Path) -> _Engine:
        key_parts = {"onnx_sha256": hashlib.sha256(self.bundle.file_bytes(onnx_path.name)).hexdigest(), "trt_version": self.trt.__version__,
                     "gpu_name": self.gpu_name, "precision": self.build_precision, "max_batch": self.max_batch}
        engine = self.cache.get_or_build(graph, key_parts, lambda: self._build(onnx_path),
                                         self._runtime.deserialize_cuda_engine)
        return _Engine(self.trt, self.cudart, engine, self.max_batch)

    def _build(self, onnx_path: Path) -> bytes:
        trt = self.trt
        builder = trt.Builder(self._logger)
        network = builder.create_network(0)  # TensorRT 10: always explicit batch
        parser = trt.OnnxParser(network, self._logger)
        if not parser.parse(self.bundle.file_bytes(onnx_path.name)):  # the bytes verified at bundle load
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise BackendError(f"TensorRT could not parse {onnx_path}: {errors}")
        config = builder.create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        if self.build_precision in ("fp16", "int8"):
            config.set_flag(trt.BuilderFlag.FP16)
        if self.build_precision == "int8":
            config.set_flag(trt.BuilderFlag.INT8)  # Q/DQ nodes give the scales: explicit quantization
        timing_path = self.cache.timing_cache_path(trt.__version__, self.gpu_name)
        timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
        config.set_timing_cache(timing, ignore_mismatch=False)
        profile = builder.create_optimization_profile()
        for i in range(network.num_inputs):
            tensor = network.get_input(i)
            sample = tuple(tensor.shape)[1:]
            profile.set_shape(tensor.name, (1, *sample), (1, *sample), (self.max_batch, *sample))
        config.add_optimization_profile(profile)
        serialized = builder.build_serialized_network(network, config)
        if serialized is None:
            raise BackendError(f"TensorRT engine build failed for {onnx_path} ({self.build_precision})")
        from ...atomic import atomic_write_bytes
        atomic_write_bytes(timing_path, bytes(config.get_timing_cache().serialize()))
        return bytes(serialized)

    def _run_chunked(self, engine: _Engine, name: str, array: np.ndarray) -> dict[str, np.ndarray]:
        parts = [engine.run({name: array[i:i + self.max_batch]}) for i in range(0, array.shape[0], self.max_batch)]
        return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}

    def _run_encoder(self, images: np.ndarray) -> dict[str, np.ndarray]:
        return self._run_chunked(self._encoder, "image", images)

    def _run_decoder(self, latent: np.ndarray) -> np.ndarray:
        if self._decoder is None:
            self._decoder = self._engine("decoder", self.bundle.decoder_path)
        return self._run_chunked(self._decoder, "z", latent)["image"]

    def describe(self) -> dict[str, Any]:
        info = super().describe()
        info.update({"gpu": self.gpu_name, "tensorrt": self.trt.__version__, "engine_precision": self.build_precision,
                     "engine_cache": str(self.cache.directory), "max_batch": self.max_batch})
        return info

    def close(self) -> None:
        for engine in (self._encoder, self._decoder):
            if engine is not None:
                engine.close()
        self._encoder = self._decoder = None
        super().close()
