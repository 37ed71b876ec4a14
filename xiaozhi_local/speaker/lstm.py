"""The GE2E network (3-layer LSTM → linear → ReLU) as plain numpy, and its weights.

`Ge2eWeights` validates and holds the tensors of Resemblyzer's ``model_state``; `forward_numpy`
is the readable reference forward pass (torch's LSTM equations, gate order input, forget,
cell, output). `xiaozhi_local.speaker.onnx_graph` runs the same network faster.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

import numpy as np
import numpy.typing as npt

from xiaozhi_local.errors import ModelError
from xiaozhi_local.speaker.mel import N_MELS

__all__ = ["EMBEDDING_SIZE", "HIDDEN_SIZE", "NUM_LAYERS", "Ge2eWeights", "LstmLayer", "forward_numpy"]

EMBEDDING_SIZE: Final = 256
HIDDEN_SIZE: Final = 256
NUM_LAYERS: Final = 3

Float32Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class LstmLayer:
    """One layer in torch's layout: gates stacked (input, forget, cell, output) along axis 0."""

    weight_ih: Float32Array  # (4H, in)
    weight_hh: Float32Array  # (4H, H)
    bias_ih: Float32Array  # (4H,)
    bias_hh: Float32Array  # (4H,)


@dataclass(frozen=True)
class Ge2eWeights:
    layers: tuple[LstmLayer, ...]
    linear_weight: Float32Array  # (256, 256)
    linear_bias: Float32Array  # (256,)

    @classmethod
    def from_state_dict(cls, state: dict[str, npt.NDArray[np.float32]]) -> Ge2eWeights:
        def get(name: str, shape: tuple[int, ...]) -> Float32Array:
            if name not in state:
                raise ModelError(f"GE2E weights are missing {name!r}; is this Resemblyzer's pretrained.pt?")
            value = np.array(state[name], dtype=np.float32, order="C", copy=True)
            if value.shape != shape:
                raise ModelError(f"GE2E weight {name!r} has shape {value.shape}, expected {shape}")
            value.flags.writeable = False
            return value

        gates = 4 * HIDDEN_SIZE
        layers = tuple(
            LstmLayer(
                weight_ih=get(f"lstm.weight_ih_l{i}", (gates, N_MELS if i == 0 else HIDDEN_SIZE)),
                weight_hh=get(f"lstm.weight_hh_l{i}", (gates, HIDDEN_SIZE)),
                bias_ih=get(f"lstm.bias_ih_l{i}", (gates,)),
                bias_hh=get(f"lstm.bias_hh_l{i}", (gates,)),
            )
            for i in range(NUM_LAYERS)
        )
        return cls(layers, get("linear.weight", (EMBEDDING_SIZE, HIDDEN_SIZE)), get("linear.bias", (EMBEDDING_SIZE,)))


def _sigmoid(x: Float32Array) -> Float32Array:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def forward_numpy(weights: Ge2eWeights, mels: Float32Array) -> Float32Array:
    """(batch, frames, 40) mel spectrograms → (batch, 256) raw embeddings (after ReLU, before L2 norm)."""
    x = np.asarray(mels, dtype=np.float32)
    n_hidden = HIDDEN_SIZE
    batch, frames, _ = x.shape
    h = np.zeros((batch, n_hidden), dtype=np.float32)
    for layer in weights.layers:
        inputs = x @ layer.weight_ih.T + (layer.bias_ih + layer.bias_hh)  # every time step at once
        w_hh_t = layer.weight_hh.T
        h = np.zeros((batch, n_hidden), dtype=np.float32)
        c = np.zeros((batch, n_hidden), dtype=np.float32)
        outputs = np.empty((batch, frames, n_hidden), dtype=np.float32)
        for t in range(frames):
            g = inputs[:, t] + h @ w_hh_t
            in_forget = _sigmoid(g[:, : 2 * n_hidden])
            cell = np.tanh(g[:, 2 * n_hidden : 3 * n_hidden])
            out_gate = _sigmoid(g[:, 3 * n_hidden :])
            c = in_forget[:, n_hidden:] * c + in_forget[:, :n_hidden] * cell
            h = out_gate * np.tanh(c)
            outputs[:, t] = h
        x = outputs
    return np.maximum(h @ weights.linear_weight.T + weights.linear_bias, 0.0).astype(np.float32)
