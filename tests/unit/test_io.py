import json
import os

import pytest
import torch

from pgrad.errors import PolicyFileError
from pgrad.io import (
    atomic_write_text,
    load_checkpoint,
    optimizer_from_tensors,
    optimizer_to_tensors,
    read_tensors,
    save_checkpoint,
    write_tensors,
)


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    target = tmp_path / "policy.json"
    atomic_write_text(target, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["policy.json"]  # no temp file left behind


def test_tensor_digest_detects_any_changed_byte(tmp_path):
    path = tmp_path / "w.safetensors"
    digest = write_tensors(path, {"a": torch.arange(10.0)})
    assert torch.equal(read_tensors(path, "weights", digest)["a"], torch.arange(10.0))
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))
    read_tensors(path, "weights")  # still a structurally valid file...
    with pytest.raises(PolicyFileError, match="SHA-256"):
        read_tensors(path, "weights", digest)  # ...but the digest catches it


def test_optimizer_state_round_trips_through_tensors_and_json(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(4, 3)).square().sum().backward()
        optimizer.step()
    tensors, meta = optimizer_to_tensors(optimizer)
    save_checkpoint(tmp_path, {"optimizer": meta}, tensors)
    state, loaded_tensors = load_checkpoint(tmp_path)
    fresh = torch.optim.Adam(model.parameters(), lr=5.0)
    optimizer_from_tensors(fresh, loaded_tensors, json.loads(json.dumps(state["optimizer"])))
    original, restored = optimizer.state_dict(), fresh.state_dict()
    assert restored["param_groups"][0]["lr"] == 1e-3
    for index, param_state in original["state"].items():
        for key, value in param_state.items():
            assert torch.equal(torch.as_tensor(value), torch.as_tensor(restored["state"][index][key])), key


def test_checkpoint_with_mismatched_files_is_rejected(tmp_path):
    save_checkpoint(tmp_path, {"step": 1}, {"w": torch.zeros(2)})
    write_tensors(tmp_path / "state.safetensors", {"w": torch.ones(2)})  # killed between the two writes
    with pytest.raises(PolicyFileError, match="corrupted"):
        load_checkpoint(tmp_path)
