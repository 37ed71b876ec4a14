"""The GE2E network as an in-memory ONNX graph for onnxruntime (fast path; no file, no `onnx` package).

ONNX's ``LSTM`` operator runs the whole sequence in C++, about ten times faster than a numpy
loop over 160 time steps, and with one thread it does not fight ASR for the CPU. The graph is
three ``LSTM`` nodes, ``Gemm`` and ``Relu``; the L2 normalisation stays in numpy.
We serialise the few protobuf messages it needs by hand (field numbers from onnx.proto).
Gate order differs: torch stacks (input, forget, cell, output), ONNX (input, output, forget, cell).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import numpy as np
import numpy.typing as npt

from xiaozhi_local.speaker.lstm import HIDDEN_SIZE, Ge2eWeights
from xiaozhi_local.speaker.mel import N_MELS

__all__ = ["INPUT_NAME", "OUTPUT_NAME", "build_ge2e_onnx"]

INPUT_NAME: Final = "mels"
"""(frames, batch, 40) float32: time-major, as ONNX's LSTM wants it."""
OUTPUT_NAME: Final = "embeds_raw"
"""(batch, 256) float32 after ReLU."""

_IR_VERSION: Final = 8
_OPSET: Final = 17
_FLOAT: Final = 1
_INT64: Final = 7
_ATTR_INT: Final = 2


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _int(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def _str(field: int, text: str) -> bytes:
    return _bytes(field, text.encode())


def _tensor(name: str, array: npt.NDArray[np.float32] | npt.NDArray[np.int64]) -> bytes:
    elem = _FLOAT if array.dtype == np.float32 else _INT64
    dims = b"".join(_int(1, d) for d in array.shape)
    raw = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<")).tobytes()
    return dims + _int(2, elem) + _str(8, name) + _bytes(9, raw)


def _node(op: str, inputs: Sequence[str], outputs: Sequence[str], ints: dict[str, int] | None = None) -> bytes:
    attrs = b"".join(_bytes(5, _str(1, k) + _int(3, v) + _int(20, _ATTR_INT)) for k, v in (ints or {}).items())
    return b"".join(_str(1, i) for i in inputs) + b"".join(_str(2, o) for o in outputs) + _str(4, op) + attrs


def _value_info(name: str, dims: Sequence[int | str]) -> bytes:
    shape = b"".join(_bytes(1, _int(1, d) if isinstance(d, int) else _str(2, d)) for d in dims)
    tensor_type = _int(1, _FLOAT) + _bytes(2, shape)
    return _str(1, name) + _bytes(2, _bytes(1, tensor_type))


def _onnx_gates(w: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    i, f, g, o = np.split(w, 4, axis=0)
    return np.concatenate([i, o, f, g], axis=0)


def build_ge2e_onnx(weights: Ge2eWeights) -> bytes:
    """A serialised ONNX ModelProto: ``mels`` (frames, batch, 40) → ``embeds_raw`` (batch, 256)."""
    nodes: list[bytes] = []
    inits: list[bytes] = [_tensor("seq_shape", np.array([0, -1, HIDDEN_SIZE], dtype=np.int64)),
                          _tensor("last_shape", np.array([-1, HIDDEN_SIZE], dtype=np.int64))]
    x = INPUT_NAME
    for n, layer in enumerate(weights.layers):
        bias = np.concatenate([_onnx_gates(layer.bias_ih), _onnx_gates(layer.bias_hh)])
        inits += [_tensor(f"W{n}", _onnx_gates(layer.weight_ih)[None]),
                  _tensor(f"R{n}", _onnx_gates(layer.weight_hh)[None]),
                  _tensor(f"B{n}", bias[None])]
        # Y is (frames, directions=1, batch, hidden); Y_h is (1, batch, hidden).
        nodes.append(_node("LSTM", [x, f"W{n}", f"R{n}", f"B{n}"], [f"Y{n}", f"Y_h{n}"], {"hidden_size": HIDDEN_SIZE}))
        nodes.append(_node("Reshape", [f"Y{n}", "seq_shape"], [f"X{n}"]))
        x = f"X{n}"
    last = len(weights.layers) - 1
    inits += [_tensor("linear_w", weights.linear_weight), _tensor("linear_b", weights.linear_bias)]
    nodes.append(_node("Reshape", [f"Y_h{last}", "last_shape"], ["hidden"]))
    nodes.append(_node("Gemm", ["hidden", "linear_w", "linear_b"], ["linear"], {"transB": 1}))
    nodes.append(_node("Relu", ["linear"], [OUTPUT_NAME]))
    graph = (b"".join(_bytes(1, node) for node in nodes) + _str(2, "ge2e")
             + b"".join(_bytes(5, t) for t in inits)
             + _bytes(11, _value_info(INPUT_NAME, ["frames", "batch", N_MELS]))
             + _bytes(12, _value_info(OUTPUT_NAME, ["batch", weights.linear_bias.shape[0]])))
    opset = _str(1, "") + _int(2, _OPSET)
    return _int(1, _IR_VERSION) + _str(2, "xiaozhi-local") + _bytes(8, opset) + _bytes(7, graph)
