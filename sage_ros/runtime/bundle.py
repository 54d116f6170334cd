"""Load and verify a model bundle directory (docs/design.md "Model bundle"). numpy-free, torch-free, rclpy-free.

`load_bundle(path)` checks, in order: bundle.json parses and has the fixed keys; architecture, precision and input
range are known and consistent; every file listed under `files` exists and has the recorded sha256 (and
encoder/decoder are listed); the ONNX graphs' input/output names, dtypes and dims agree with `input` and
`latent_shape`. Any failure raises BundleError naming the file and the mismatch.

Time of check = time of use: each listed file is read once, its sha256 taken over those bytes, and the bytes kept
(`Bundle.file_bytes`); the graph checks and every backend load from them, never from the path again, so a file
replaced on disk after loading (decoder.onnx, say) is never used under the old checksums.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sage_ros.hashing import sha256_file  # noqa: F401 (re-exported: backends and tests import it from here)

from .safe_json import JSONLimitError, loads_limited

BUNDLE_FILE = "bundle.json"
MAX_META_BYTES = 1 << 20  # a shipped bundle.json is ~3 KB
MAX_META_DEPTH = 32
REQUIRED_KEYS = ("name", "architecture", "precision", "input", "latent_shape", "files", "metrics", "created_by")
PRECISIONS = ("fp32", "fp16", "int8", "int4")
GAUSSIAN_ARCHITECTURES = ("TinyVAE", "TinyVAELinSkip", "TinyVAE32", "TinyVAE32LinSkip")
VQ_ARCHITECTURES = ("VisionPuzzleVAE",)
# The input range each architecture was trained in (docs/design.md "Models"): a bundle claiming another one is wrong.
ARCHITECTURE_RANGE = {"TinyVAE": (0.0, 1.0), "TinyVAELinSkip": (0.0, 1.0), "TinyVAE32": (0.0, 1.0),
                      "TinyVAE32LinSkip": (0.0, 1.0), "VisionPuzzleVAE": (-1.0, 1.0)}
# ONNX TensorProto element types we accept, by name.
_ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 2: "uint8"}


class BundleError(ValueError):
    """A bundle is missing, corrupt, or inconsistent. The message names the file and the mismatch."""


@dataclass(frozen=True)
class Bundle:
    path: Path
    meta: dict = field(repr=False)
    blobs: dict = field(default_factory=dict, repr=False, compare=False)  # file name -> the verified bytes

    def file_bytes(self, file_name: str) -> bytes:
        """The bytes of a bundle file as verified at load (read now, and checked when listed, if not kept then)."""
        data = self.blobs.get(file_name)
        if data is None:
            try:
                data = (self.path / file_name).read_bytes()
            except OSError as err:
                raise BundleError(f"{self.path / file_name}: cannot be read ({err.strerror or err})") from None
            expected = self.meta.get("files", {}).get(file_name)
            if expected is not None and hashlib.sha256(data).hexdigest() != expected:
                raise BundleError(f"{self.path / file_name}: sha256 mismatch (bundle.json says {expected}); the "
                                  "file changed after the bundle was listed")
            self.blobs[file_name] = data
        return data

    @property
    def name(self) -> str:
        return self.meta["name"]

    @property
    def architecture(self) -> str:
        return self.meta["architecture"]

    @property
    def precision(self) -> str:
        return self.meta["precision"]

    @property
    def is_vq(self) -> bool:
        """True for VisionPuzzleVAE: encoder gives `codes`, decoder takes codes."""
        return self.architecture in VQ_ARCHITECTURES

    @property
    def input_size(self) -> tuple[int, int]:
        """(height, width) the encoder takes."""
        return int(self.meta["input"]["height"]), int(self.meta["input"]["width"])

    @property
    def input_range(self) -> tuple[float, float]:
        lo, hi = self.meta["input"]["range"]
        return float(lo), float(hi)

    @property
    def latent_shape(self) -> tuple[int, ...]:
        return tuple(int(d) for d in self.meta["latent_shape"])

    @property
    def encoder_outputs(self) -> tuple[str, ...]:
        return ("codes",) if self.is_vq else ("mu", "logvar")

    @property
    def encoder_path(self) -> Path:
        return self.path / self.meta.get("encoder", {}).get("file", "encoder.onnx")

    @property
    def decoder_path(self) -> Path:
        return self.path / self.meta.get("decoder", {}).get("file", "decoder.onnx")

    @property
    def torch_weights_path(self) -> Path | None:
        name = self.meta.get("torch_weights")
        return None if name is None else self.path / name

    def sha256(self, file_name: str) -> str:
        return self.meta["files"][file_name]


def load_bundle(path: str | Path, *, verify_checksums: bool = True) -> Bundle:
    """Read and verify the bundle directory `path` (or its bundle.json); raises BundleError on any problem."""
    path = Path(path)
    if path.name == BUNDLE_FILE:
        path = path.parent
    meta_path = path / BUNDLE_FILE
    if not path.is_dir():
        raise BundleError(f"{path}: bundle directory does not exist")
    if not meta_path.is_file():
        raise BundleError(f"{meta_path}: missing (a bundle directory holds bundle.json, encoder.onnx, decoder.onnx)")
    meta = read_bundle_meta(meta_path)
    bundle = Bundle(path=path, meta=meta)
    _check_meta(bundle, meta_path)
    _check_files(bundle, verify_checksums)
    _check_graph(bundle, bundle.encoder_path, _expected_encoder_io(bundle))
    _check_graph(bundle, bundle.decoder_path, _expected_decoder_io(bundle))
    return bundle


def read_bundle_meta(meta_path: Path) -> dict:
    """bundle.json parsed with size / depth limits and checked against the schema (schema_error); BundleError says
    why not. Everything that reads a bundle.json (load_bundle, the consumer's bundle search) goes through here."""
    try:
        with open(meta_path, "rb") as handle:
            data = handle.read(MAX_META_BYTES + 1)
        meta = loads_limited(data, max_bytes=MAX_META_BYTES, max_depth=MAX_META_DEPTH, what=BUNDLE_FILE)
    except OSError as err:
        raise BundleError(f"{meta_path}: cannot be read ({err.strerror or err})") from None
    except JSONLimitError as err:
        raise BundleError(f"{meta_path}: {err}") from None
    reason = schema_error(meta)
    if reason:
        raise BundleError(f"{meta_path}: {reason}")
    return meta


def _is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def schema_error(meta: Any) -> str | None:
    """Why `meta` is not a bundle.json the runtime can use (types and shapes of every key it reads), else None.
    A small declarative check rather than a jsonschema dependency: the robot's runtime stays lean."""
    if not isinstance(meta, dict):
        return "top level must be an object"
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        return f"missing keys {missing}"
    for key in ("name", "architecture", "precision", "created_by"):
        if not isinstance(meta[key], str) or not meta[key]:
            return f"{key} must be a non-empty string, got {meta[key]!r}"
    if not isinstance(meta["metrics"], dict):
        return f"metrics must be an object, got {type(meta['metrics']).__name__}"
    files = meta["files"]
    if not isinstance(files, dict) or not all(isinstance(k, str) and _is_sha256(v) for k, v in files.items()):
        return "files must map file name -> sha256 (64 lowercase hex digits)"
    for key in ("encoder", "decoder"):
        entry = meta.get(key, {})
        if not isinstance(entry, dict):
            return f"{key} must be an object"
        if not isinstance(entry.get("file", f"{key}.onnx"), str):
            return f"{key}.file must be a file name (a string), got {entry['file']!r}"
    if "torch_weights" in meta and not isinstance(meta["torch_weights"], str):
        return f"torch_weights must be a file name (a string), got {meta['torch_weights']!r}"
    if "num_codes" in meta and not (type(meta["num_codes"]) is int and 1 <= meta["num_codes"] <= 256):
        return f"num_codes must be an int in 1..256, got {meta['num_codes']!r}"
    spec = meta["input"]
    if not isinstance(spec, dict):
        return "input must be an object"
    for key in ("height", "width"):
        if key in spec and not (type(spec[key]) is int and 0 < spec[key] <= 65536):
            return f"input.{key} must be a positive int, got {spec[key]!r}"
    return None


def _check_meta(bundle: Bundle, meta_path: Path) -> None:
    meta = bundle.meta
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise BundleError(f"{meta_path}: missing keys {missing}")
    if meta["architecture"] not in ARCHITECTURE_RANGE:
        raise BundleError(f"{meta_path}: architecture {meta['architecture']!r} not one of {sorted(ARCHITECTURE_RANGE)}")
    if meta["precision"] not in PRECISIONS:
        raise BundleError(f"{meta_path}: precision {meta['precision']!r} not one of {list(PRECISIONS)}")
    spec = meta["input"]
    for key in ("height", "width", "range"):
        if not isinstance(spec, dict) or key not in spec:
            raise BundleError(f"{meta_path}: input.{key} missing")
    for key, expected in (("color_order", "rgb"), ("layout", "NCHW"), ("dtype", "float32")):
        if spec.get(key, expected) != expected:
            raise BundleError(f"{meta_path}: input.{key} is {spec[key]!r}, the runtime supports only {expected!r}")
    try:
        lo, hi = (float(v) for v in spec["range"])
    except (TypeError, ValueError):
        raise BundleError(f"{meta_path}: input.range must be [lo, hi], got {spec['range']!r}") from None
    if (lo, hi) != ARCHITECTURE_RANGE[meta["architecture"]]:
        raise BundleError(f"{meta_path}: input.range {[lo, hi]} does not match {meta['architecture']}'s "
                          f"{list(ARCHITECTURE_RANGE[meta['architecture']])}")
    if not (isinstance(meta["latent_shape"], list) and meta["latent_shape"]
            and all(isinstance(d, int) and d > 0 for d in meta["latent_shape"])):
        raise BundleError(f"{meta_path}: latent_shape must be a list of positive ints, got {meta['latent_shape']!r}")
    if bundle.is_vq and len(meta["latent_shape"]) != 2:
        raise BundleError(f"{meta_path}: VisionPuzzleVAE latent_shape must be the code grid [30, 30]")
    if not bundle.is_vq and len(meta["latent_shape"]) != 1:
        raise BundleError(f"{meta_path}: {meta['architecture']} latent_shape must be [L]")
    if not isinstance(meta["files"], dict):
        raise BundleError(f"{meta_path}: files must map file name -> sha256")


def _inside(bundle: Bundle, name: Any, what: str) -> None:
    """`name` must be a plain file name whose file, symlinks followed, lies in the bundle directory itself: an
    absolute path, a directory part, '..' or a symlink leading out would load a file no checksum covers."""
    meta_path = bundle.path / BUNDLE_FILE
    if not isinstance(name, str) or not name or name in (".", "..") or Path(name).name != name or "\\" in name:
        raise BundleError(f"{meta_path}: {what} {name!r} must not contain a directory: a plain file name inside "
                          "the bundle directory (no absolute path, directory part or '..')")
    resolved = (bundle.path / name).resolve()
    if resolved.parent != bundle.path.resolve():
        raise BundleError(f"{meta_path}: {what} {name!r} resolves to {resolved}, outside the bundle directory "
                          f"{bundle.path.resolve()} (a symlink leading out); refused")


def _check_files(bundle: Bundle, verify_checksums: bool) -> None:
    files = bundle.meta["files"]
    for key in ("encoder", "decoder"):  # optional {"file": name} entries: the graphs actually loaded
        entry = bundle.meta.get(key, {})
        if not isinstance(entry, dict):
            raise BundleError(f"{bundle.path / BUNDLE_FILE}: {key} must be an object")
        _inside(bundle, entry.get("file", f"{key}.onnx"), f"{key}.file")
    for graph in (bundle.encoder_path, bundle.decoder_path):
        if graph.name not in files:
            raise BundleError(f"{bundle.path / BUNDLE_FILE}: files does not list {graph.name}")
    weights = bundle.torch_weights_path
    if weights is not None:
        _inside(bundle, bundle.meta["torch_weights"], "torch_weights")
        if weights.name not in files:
            raise BundleError(f"{bundle.path / BUNDLE_FILE}: torch_weights {weights.name} is not listed in files")
    for file_name, expected in files.items():
        file_path = bundle.path / file_name
        _inside(bundle, file_name, "files entry")
        if not file_path.is_file():
            raise BundleError(f"{file_path}: listed in bundle.json but missing")
        if verify_checksums:  # read once: these bytes are verified, checked and loaded (file_bytes)
            try:
                data = file_path.read_bytes()
            except OSError as err:
                raise BundleError(f"{file_path}: cannot be read ({err.strerror or err})") from None
            actual = hashlib.sha256(data).hexdigest()
            if actual != expected:
                raise BundleError(f"{file_path}: sha256 mismatch (bundle.json says {expected}, file has {actual})")
            bundle.blobs[file_name] = data


def _expected_encoder_io(bundle: Bundle) -> dict:
    height, width = bundle.input_size
    image = {"image": (["N", 3, height, width], ("float32",))}
    if bundle.is_vq:
        return {"inputs": image, "outputs": {"codes": (["N", *bundle.latent_shape], ("int64", "int32"))}}
    latent = (["N", *bundle.latent_shape], ("float32",))
    return {"inputs": image, "outputs": {"mu": latent, "logvar": latent}}


def _expected_decoder_io(bundle: Bundle) -> dict:
    height, width = bundle.input_size
    z_dtypes = ("int64", "int32") if bundle.is_vq else ("float32",)
    return {"inputs": {"z": (["N", *bundle.latent_shape], z_dtypes)},
            "outputs": {"image": (["N", 3, height, width], ("float32",))}}


def graph_io(onnx_path: Path | bytes) -> dict[str, dict[str, tuple[list, str]]]:
    """{"inputs"|"outputs": {name: (dims, dtype)}} of an ONNX file (a path or its bytes); dims are ints, or strings
    for symbolic ones.

    Uses the `onnx` package when present (reads the protobuf only), else an onnxruntime session's metadata, so a
    robot with only onnxruntime can still verify bundles.
    """
    try:
        import onnx
    except ImportError:
        onnx = None
    if onnx is not None:
        graph = (onnx.load_from_string(bytes(onnx_path)) if isinstance(onnx_path, (bytes, bytearray))
                 else onnx.load(str(onnx_path), load_external_data=False)).graph
        initializers = {init.name for init in graph.initializer}

        def describe(values) -> dict:
            return {v.name: ([d.dim_param or (d.dim_value if d.HasField("dim_value") else "?")
                              for d in v.type.tensor_type.shape.dim],
                             _ONNX_DTYPES.get(v.type.tensor_type.elem_type, str(v.type.tensor_type.elem_type)))
                    for v in values if v.name not in initializers}
        return {"inputs": describe(graph.input), "outputs": describe(graph.output)}
    import onnxruntime as ort

    session = ort.InferenceSession(onnx_path if isinstance(onnx_path, (bytes, bytearray)) else str(onnx_path),
                                   providers=["CPUExecutionProvider"])
    ort_types = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
                 "tensor(int32)": "int32", "tensor(uint8)": "uint8"}

    def describe_ort(values) -> dict:
        return {v.name: ([d if d is not None else "?" for d in v.shape], ort_types.get(v.type, v.type))
                for v in values}
    return {"inputs": describe_ort(session.get_inputs()), "outputs": describe_ort(session.get_outputs())}


def _check_graph(bundle: Bundle, onnx_path: Path, expected: dict) -> None:
    try:
        actual = graph_io(bundle.file_bytes(onnx_path.name))
    except BundleError:
        raise
    except Exception as err:  # a corrupt protobuf raises DecodeError, onnxruntime raises its own types
        raise BundleError(f"{onnx_path}: cannot be read as ONNX ({type(err).__name__}: {err})") from None
    for side in ("inputs", "outputs"):
        if set(actual[side]) != set(expected[side]):
            raise BundleError(f"{onnx_path}: {side} are {sorted(actual[side])}, expected {sorted(expected[side])}")
        for name, (want_dims, want_dtypes) in expected[side].items():
            dims, dtype = actual[side][name]
            if dtype not in want_dtypes:
                raise BundleError(f"{onnx_path}: {side[:-1]} {name!r} has dtype {dtype}, expected {want_dtypes[0]}")
            if len(dims) != len(want_dims) or any(
                    isinstance(w, int) and isinstance(d, int) and d != w for d, w in zip(dims, want_dims)):
                # symbolic dims (strings) cannot be checked statically; the backend checks real output shapes
                raise BundleError(f"{onnx_path}: {side[:-1]} {name!r} has dims {dims}, expected {want_dims} "
                                  f"(from bundle.json input/latent_shape)")


def describe(bundle: Bundle) -> dict[str, Any]:
    """A short summary for logs and /diagnostics."""
    return {"name": bundle.name, "architecture": bundle.architecture, "precision": bundle.precision,
            "input": f"{bundle.input_size[0]}x{bundle.input_size[1]} {list(bundle.input_range)}",
            "latent_shape": list(bundle.latent_shape), "path": str(bundle.path)}


def resolve_bundle_path(value: str | Path, search: list[Path]) -> Path:
    """What a user gives as a bundle -> its directory; the one resolver of every verb and node that takes one.

    Accepts a shipped bundle's name (`tinyvae_l64_fp32`, looked up in `search`: callers pass
    consumer.shipped_model_dirs()), a bundle directory, or a file inside one (its bundle.json, encoder.onnx ...). Raises BundleError
    saying which case failed and what to give instead: no such path or name (with close names), a run directory
    (export it first), a directory of bundles (pick one), a file outside any bundle. The bundle's contents are
    checked later, by load_bundle.
    """
    import difflib

    text = str(value).strip()
    if not text:
        raise BundleError("no bundle given: pass a shipped bundle name (e.g. tinyvae_l64_fp32) or a bundle directory")
    path = Path(text).expanduser()
    if path.is_file():
        if (path.parent / BUNDLE_FILE).is_file():
            return path.parent
        raise BundleError(f"{path} is a file with no {BUNDLE_FILE} beside it: pass a bundle directory (one holding "
                          f"{BUNDLE_FILE}, encoder.onnx, decoder.onnx) or a shipped bundle name")
    if path.is_dir():
        if (path / BUNDLE_FILE).is_file():
            return path
        if (path / "model.json").is_file():
            raise BundleError(f"{path} is a training run directory, not a bundle: export one first "
                              f"(sage-ros export --run {path} --precision fp32 --out models/<name>)")
        inside = sorted(p.parent.name for p in path.glob(f"*/{BUNDLE_FILE}"))
        if inside:
            raise BundleError(f"{path} is a directory of bundles, not one: pass one of them, e.g. {path / inside[0]} "
                              f"({len(inside)} there: {', '.join(inside[:6])}{' ...' if len(inside) > 6 else ''})")
        raise BundleError(f"{path} is not a bundle directory (no {BUNDLE_FILE}): pass a directory written by "
                          "`sage-ros export` or a shipped bundle name")
    search = [Path(d) for d in search]
    if len(path.parts) == 1:  # a bare name: a shipped bundle
        for directory in search:
            if (directory / text / BUNDLE_FILE).is_file():
                return directory / text
    known = sorted({p.parent.name for d in search if d.is_dir() for p in d.glob(f"*/{BUNDLE_FILE}")})
    if path.parent.is_dir() and len(path.parts) > 1:
        known = sorted(p.parent.name for p in path.parent.glob(f"*/{BUNDLE_FILE}")) or known
    close = difflib.get_close_matches(path.name, known, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else (f"; shipped: {', '.join(known)}" if known else "")
    where = ", ".join(str(d) for d in search) or "(no model directories)"
    raise BundleError(f"bundle {text!r} not found: no such directory, nor a bundle of that name under {where}{hint}")
