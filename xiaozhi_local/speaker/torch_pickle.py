"""Read tensors from a PyTorch checkpoint (``.pt``) without torch and without running pickle code.

A ``.pt`` file is a pickle whose tensors point ("persistent ids") at raw storage bytes kept
outside the pickle. Two layouts exist:

* **zip** (torch ≥ 1.6): ``<name>/data.pkl`` plus one ``<name>/data/<key>`` member per storage;
* **legacy** (before 1.6; Resemblyzer's ``pretrained.pt`` is one): five pickles in a row — magic
  number, protocol version, system info, the object, the list of storage keys — followed by each
  storage as an int64 element count and its raw bytes, in the order of that list.

`_SafeUnpickler` resolves only the handful of globals torch writes for plain tensors
(``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2``/``_rebuild_parameter``,
``torch.<Type>Storage``) and maps each to a small function of ours; any other global — which is
how a malicious pickle would reach ``os.system`` — raises `UnsafeCheckpointError` before anything
runs. Tensors become numpy arrays copied out of the storage bytes, after a bounds check.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from xiaozhi_local.errors import ModelError, UnsafeCheckpointError

__all__ = ["UnsafeCheckpointError", "load_checkpoint", "load_state_dict"]

_LEGACY_MAGIC: Final = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL: Final = 1001

_STORAGE_DTYPES: Final[dict[str, str]] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    name: str
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype[Any]
    offset: int = 0
    """Element offset into the root storage (legacy storage views)."""


@dataclass(frozen=True)
class _LazyTensor:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor(storage: Any, offset: Any, size: Any, stride: Any, *_: Any) -> _LazyTensor:
    if not isinstance(storage, _StorageRef):
        raise UnsafeCheckpointError("a tensor refers to something that is not a storage")
    try:
        return _LazyTensor(storage, int(offset), tuple(int(s) for s in size), tuple(int(s) for s in stride))
    except (TypeError, ValueError) as exc:
        raise UnsafeCheckpointError(f"a tensor has an unreadable shape or stride: {exc}") from exc


def _rebuild_parameter(data: Any, *_: Any) -> Any:
    return data


def _ordered_dict(*args: Any) -> collections.OrderedDict[Any, Any]:
    if args:
        raise UnsafeCheckpointError("OrderedDict with constructor arguments is not expected in a checkpoint")
    return collections.OrderedDict()


_ALLOWED: Final[dict[tuple[str, str], Callable[..., Any]]] = {
    ("collections", "OrderedDict"): _ordered_dict,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only torch's tensor globals; persistent ids become `_StorageRef`s."""

    def __init__(self, file: io.BytesIO, *, legacy: bool):
        super().__init__(file)
        self.legacy = legacy
        self.storages: dict[str, tuple[np.dtype[Any], int | None]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, np.dtype(_STORAGE_DTYPES[name]))
        raise UnsafeCheckpointError(
            f"refusing to load: the checkpoint references {module}.{name}, which is not a plain tensor "
            "(only tensors, storages and OrderedDicts are allowed; the file may be malicious or not a weights file)"
        )

    def persistent_load(self, pid: Any) -> _StorageRef:
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise UnsafeCheckpointError(f"unexpected persistent id in checkpoint: {pid!r:.80}")
        storage_type, key = pid[1], str(pid[2])
        if not isinstance(storage_type, _StorageType):
            raise UnsafeCheckpointError(f"storage {key!r} has an unsupported type {storage_type!r:.60}")
        numel = int(pid[4]) if self.legacy else None
        self.storages.setdefault(key, (storage_type.dtype, numel))
        offset = 0
        view = pid[5] if self.legacy and len(pid) > 5 else None
        if view is not None:  # legacy (view_key, element offset, view size)
            offset = int(view[1])
        return _StorageRef(key, storage_type.dtype, offset)


def _unpickle(data: bytes | io.BytesIO, *, legacy: bool) -> tuple[Any, _SafeUnpickler]:
    stream = data if isinstance(data, io.BytesIO) else io.BytesIO(data)
    unpickler = _SafeUnpickler(stream, legacy=legacy)
    try:
        return unpickler.load(), unpickler
    except UnsafeCheckpointError:
        raise
    except Exception as exc:  # malformed pickle: EOFError, UnpicklingError, struct errors …
        raise UnsafeCheckpointError(f"unreadable checkpoint pickle: {type(exc).__name__}: {exc}") from exc


def _read_legacy(raw: bytes) -> tuple[Any, dict[str, npt.NDArray[Any]]]:
    stream = io.BytesIO(raw)
    magic, _ = _unpickle(stream, legacy=True)
    if magic != _LEGACY_MAGIC:
        raise UnsafeCheckpointError("not a PyTorch checkpoint (neither a zip archive nor the legacy magic number)")
    protocol, _ = _unpickle(stream, legacy=True)
    if protocol != _LEGACY_PROTOCOL:
        raise UnsafeCheckpointError(f"unsupported legacy checkpoint protocol {protocol!r}")
    sys_info, _ = _unpickle(stream, legacy=True)
    if not isinstance(sys_info, dict) or not sys_info.get("little_endian", False):
        raise UnsafeCheckpointError("only little-endian legacy checkpoints are supported")
    obj, unpickler = _unpickle(stream, legacy=True)
    keys, _ = _unpickle(stream, legacy=True)
    if not isinstance(keys, list):
        raise UnsafeCheckpointError("legacy checkpoint: the storage key list is missing")
    pos = stream.tell()
    buffers: dict[str, npt.NDArray[Any]] = {}
    for key in keys:
        if key not in unpickler.storages:
            raise UnsafeCheckpointError(f"legacy checkpoint lists storage {key!r} that no tensor uses")
        dtype, _numel = unpickler.storages[key]
        if pos + 8 > len(raw):
            raise UnsafeCheckpointError("legacy checkpoint is truncated")
        (count,) = struct.unpack_from("<q", raw, pos)
        end = pos + 8 + count * dtype.itemsize
        if count < 0 or end > len(raw):
            raise UnsafeCheckpointError(f"legacy checkpoint: storage {key!r} overruns the file")
        buffers[key] = np.frombuffer(raw, dtype=dtype, count=count, offset=pos + 8)
        pos = end
    return obj, buffers


def _read_zip(path: Path) -> tuple[Any, dict[str, npt.NDArray[Any]]]:
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n == "data.pkl" or n.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise UnsafeCheckpointError(f"zip checkpoint {path.name} has {len(pickles)} data.pkl members, expected 1")
        prefix = pickles[0][: -len("data.pkl")]
        if f"{prefix}byteorder" in names and archive.read(f"{prefix}byteorder").strip() != b"little":
            raise UnsafeCheckpointError("only little-endian checkpoints are supported")
        obj, unpickler = _unpickle(archive.read(pickles[0]), legacy=False)
        buffers: dict[str, npt.NDArray[Any]] = {}
        for key, (dtype, _) in unpickler.storages.items():
            member = f"{prefix}data/{key}"
            if member not in names:
                raise UnsafeCheckpointError(f"zip checkpoint is missing storage member {member}")
            data = archive.read(member)
            buffers[key] = np.frombuffer(data, dtype=dtype, count=len(data) // dtype.itemsize)
    return obj, buffers


def _materialize(tensor: _LazyTensor, buffers: dict[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
    ref = tensor.storage
    if ref.key not in buffers:
        raise UnsafeCheckpointError(f"tensor refers to missing storage {ref.key!r}")
    base = buffers[ref.key]
    if base.dtype != ref.dtype:
        raise UnsafeCheckpointError(f"storage {ref.key!r} is used with two dtypes ({base.dtype}, {ref.dtype})")
    if len(tensor.shape) != len(tensor.stride) or any(s < 0 for s in (*tensor.shape, *tensor.stride)):
        raise UnsafeCheckpointError(f"tensor has an invalid shape {tensor.shape} / stride {tensor.stride}")
    start = ref.offset + tensor.offset
    if any(s == 0 for s in tensor.shape):
        return np.zeros(tensor.shape, dtype=base.dtype)
    last = start + sum((n - 1) * st for n, st in zip(tensor.shape, tensor.stride, strict=True))
    if start < 0 or last >= base.size:
        raise UnsafeCheckpointError(f"tensor of shape {tensor.shape} reads outside its storage {ref.key!r}")
    strides = tuple(st * base.itemsize for st in tensor.stride)
    view = np.lib.stride_tricks.as_strided(base[start:], shape=tensor.shape, strides=strides, writeable=False)
    return np.array(view, dtype=base.dtype.newbyteorder("="), order="C", copy=True)


def _resolve(obj: Any, buffers: dict[str, npt.NDArray[Any]]) -> Any:
    if isinstance(obj, _LazyTensor):
        return _materialize(obj, buffers)
    if isinstance(obj, dict):
        out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
        for key, value in obj.items():
            out[key] = _resolve(value, buffers)
        return out
    if isinstance(obj, list):
        return [_resolve(v, buffers) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_resolve(v, buffers) for v in obj)
    if isinstance(obj, (_StorageRef, _StorageType)):
        raise UnsafeCheckpointError("checkpoint holds a bare storage, not a tensor")
    return obj


def load_checkpoint(path: str | Path) -> Any:
    """The checkpoint's object with every tensor replaced by a numpy array (native byte order)."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            obj, buffers = _read_zip(path)
        else:
            obj, buffers = _read_legacy(path.read_bytes())
    except OSError as exc:
        raise ModelError(f"cannot read checkpoint {path}: {exc}") from exc
    try:
        return _resolve(obj, buffers)
    except RecursionError as exc:  # absurdly deep or self-referencing containers
        raise UnsafeCheckpointError(f"{path.name}: the checkpoint's structure nests too deeply") from exc


def load_state_dict(path: str | Path, *, key: str | None = "model_state") -> dict[str, npt.NDArray[Any]]:
    """The ``{name: array}`` state dict of a checkpoint; `key` picks it out of a wrapping dict.

    With ``key=None`` the checkpoint itself must be the state dict. Non-tensor entries are dropped.
    """
    obj = load_checkpoint(path)
    if key is not None and isinstance(obj, dict) and key in obj:
        obj = obj[key]
    if not isinstance(obj, dict):
        raise UnsafeCheckpointError(f"{Path(path).name}: expected a state dict, found {type(obj).__name__}")
    return {str(k): v for k, v in obj.items() if isinstance(v, np.ndarray)}
