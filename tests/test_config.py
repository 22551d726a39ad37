from dataclasses import dataclass, field

import pytest
import torch

from openkws.checkpoint import MODEL_FORMAT, atomic_torch_save, load_model_file, safe_torch_load
from openkws.config import load_config, save_config


@dataclass
class Inner:
    width: int = 4
    rate: float = 0.5


@dataclass
class Outer:
    name: str = "x"
    inner: Inner = field(default_factory=Inner)
    items: list[str] = field(default_factory=list)


def test_yaml_and_dotted_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: base\ninner:\n  width: 8\n")
    cfg = load_config(Outer, path, ["inner.rate=2", "items=[a, b]"])
    assert cfg == Outer(name="base", inner=Inner(width=8, rate=2.0), items=["a", "b"])
    save_config(cfg, tmp_path / "resolved.yaml")
    assert load_config(Outer, tmp_path / "resolved.yaml") == cfg


def test_unknown_key_lists_valid_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("inner:\n  widht: 8\n")
    with pytest.raises(ValueError, match=r"widht.*valid keys: \['rate', 'width'\]"):
        load_config(Outer, path)


def test_wrong_type_is_reported():
    with pytest.raises(ValueError, match="inner.width"):
        load_config(Outer, None, ["inner.width=wide"])


def test_missing_config_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_config(Outer, tmp_path / "nope.yaml")


def test_corrupt_and_foreign_model_files(tmp_path):
    truncated = tmp_path / "model.pt"
    atomic_torch_save({"format": MODEL_FORMAT, "state_dict": {"w": torch.ones(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:100])
    with pytest.raises(ValueError, match="model.pt.*corrupt"):
        safe_torch_load(truncated)
    foreign = tmp_path / "foreign.pt"
    atomic_torch_save({"weights": torch.ones(2)}, foreign)
    with pytest.raises(ValueError, match="not an openkws model file"):
        load_model_file(foreign)
    with pytest.raises(FileNotFoundError):
        load_model_file(tmp_path / "missing.pt")


def test_atomic_save_leaves_no_temp_files_and_the_usual_permissions(tmp_path):
    atomic_torch_save({"a": torch.zeros(3)}, tmp_path / "x.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["x.pt"]
    (tmp_path / "plain").write_bytes(b"")  # what open() gives under this umask, not mkstemp's 0600
    assert (tmp_path / "x.pt").stat().st_mode == (tmp_path / "plain").stat().st_mode
def test_float_without_dot_in_yaml():
    assert load_config(Inner, None, ["rate=3e-3"]).rate == 0.003
