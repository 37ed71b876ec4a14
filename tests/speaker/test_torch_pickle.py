"""The torch checkpoint reader: both formats, the real model, and refusal of anything but tensors."""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tests.speaker.conftest import FIXTURES
from xiaozhi_local.errors import ModelError
from xiaozhi_local.speaker.torch_pickle import UnsafeCheckpointError, load_checkpoint, load_state_dict

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


class _Evil:
    """Unpickling this with the stock unpickler would run a shell command."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def _legacy_bytes(main: bytes) -> bytes:
    header = b"".join(pickle.dumps(x, protocol=2) for x in
                      (LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}))
    return header + main + pickle.dumps([], protocol=2)


@pytest.mark.parametrize("name", ["tiny_zip.pt", "tiny_legacy.pt"])
def test_reads_both_torch_formats_exactly(name: str) -> None:
    expected = json.loads((FIXTURES / "tiny_checkpoints.json").read_text())
    loaded = load_checkpoint(FIXTURES / name)
    assert loaded["step"] == expected["step"]
    state = loaded["model_state"]
    assert list(state) == list(expected["model_state"])
    for key, want in expected["model_state"].items():
        assert state[key].dtype == np.dtype(want["dtype"]), key
        np.testing.assert_array_equal(state[key], np.array(want["values"], dtype=want["dtype"]), err_msg=key)
        assert state[key].flags.c_contiguous and state[key].flags.writeable


def test_load_state_dict_unwraps_and_keeps_only_tensors() -> None:
    state = load_state_dict(FIXTURES / "tiny_zip.pt")
    assert set(state) == {"transposed", "offset_view", "int64", "float64", "parameter"}
    assert all(isinstance(v, np.ndarray) for v in state.values())


@pytest.mark.parametrize("layout", ["zip", "legacy"])
def test_refuses_a_pickle_that_would_run_code(tmp_path: Path, layout: str) -> None:
    marker = tmp_path / "pwned"
    main = pickle.dumps({"model_state": _Evil(marker)}, protocol=2)
    path = tmp_path / "evil.pt"
    if layout == "zip":
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("evil/data.pkl", main)
    else:
        path.write_bytes(_legacy_bytes(main))
    with pytest.raises(UnsafeCheckpointError, match=r"refusing to load.*system"):
        load_checkpoint(path)
    assert not marker.exists()


def test_refuses_a_tensor_that_reads_past_its_storage(tmp_path: Path) -> None:
    path = tmp_path / "truncated.pt"
    with zipfile.ZipFile(FIXTURES / "tiny_zip.pt") as src, zipfile.ZipFile(path, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if "/data/" in item.filename and not item.filename.endswith("serialization_id"):
                data = data[:4]  # one float32 left in every storage
            dst.writestr(item, data)
    with pytest.raises(UnsafeCheckpointError, match="outside its storage"):
        load_checkpoint(path)


@pytest.mark.parametrize("payload", [b"", b"not a checkpoint at all", pickle.dumps([1, 2, 3], protocol=2)])
def test_refuses_files_that_are_not_checkpoints(tmp_path: Path, payload: bytes) -> None:
    path = tmp_path / "junk.pt"
    path.write_bytes(payload)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)


def test_a_missing_file_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot read checkpoint"):
        load_checkpoint(tmp_path / "absent.pt")


def _unicode(text: str) -> bytes:
    data = text.encode()
    return b"X" + len(data).to_bytes(4, "little") + data


def test_refuses_a_bare_storage_without_tensor(tmp_path: Path) -> None:
    # {"x": <persistent id ("storage", torch.FloatStorage, "0", "cpu", 1)>}, written opcode by opcode.
    storage_pid = b"(" + _unicode("storage") + b"ctorch\nFloatStorage\n" + _unicode("0") + _unicode("cpu") + b"K\x01tQ"
    data_pkl = b"\x80\x02}" + _unicode("x") + storage_pid + b"s."
    path = tmp_path / "bare.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("bare/data.pkl", data_pkl)
        archive.writestr("bare/data/0", np.float32(1).tobytes())
    with pytest.raises(UnsafeCheckpointError, match="bare storage"):
        load_checkpoint(path)


@pytest.mark.models
def test_reads_the_real_ge2e_weights(ge2e_path: Path) -> None:
    state = load_state_dict(ge2e_path)
    shapes = {k: v.shape for k, v in state.items()}
    for layer in range(3):
        assert shapes[f"lstm.weight_ih_l{layer}"] == (1024, 40 if layer == 0 else 256)
        assert shapes[f"lstm.weight_hh_l{layer}"] == (1024, 256)
        assert shapes[f"lstm.bias_ih_l{layer}"] == shapes[f"lstm.bias_hh_l{layer}"] == (1024,)
    assert shapes["linear.weight"] == (256, 256) and shapes["linear.bias"] == (256,)
    assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in state.values())
    # The LSTM weights share one storage (cuDNN's flat buffer) at different offsets: they must not alias.
    assert not np.array_equal(state["lstm.weight_hh_l0"], state["lstm.weight_hh_l1"])
