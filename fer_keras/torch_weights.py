"""Reads PyTorch weight files (`torch.save` of a state dict) into NumPy arrays, without installing torch.

Two on-disk formats exist and both are read:

- the zip format (torch >= 1.6): `<archive>/data.pkl` is a pickle whose tensors point by key at raw storages stored
  as `<archive>/data/<key>`;
- the legacy format (torch < 1.6, e.g. torchvision's 2018 ImageNet files): five pickles in a row (magic number,
  protocol version, system info, the object, the list of storage keys), then each storage as an 8-byte
  little-endian element count followed by its raw little-endian bytes.

In both, a tensor is pickled as a call to `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, ...)` and a
storage as a persistent id `('storage', <storage class>, key, location, numel[, view])`. This module's unpickler
allows only those globals (plus `collections.OrderedDict`), and the legacy format's header pickles allow none, so a
weight file cannot run code when it is read; every tensor's offset, size and stride is checked against its storage
before it is read.

Example:
    >>> state = load_state_dict("mobilenet_v2-b0353104.pth")
    >>> state["features.0.0.weight"].shape
    (32, 3, 3, 3)
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Dict

import numpy as np

from fer_keras.errors import ModelError

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "BFloat16Storage": None,  # read as uint16 and widened below
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str):
        if name not in _DTYPES:
            raise pickle.UnpicklingError(f"unsupported storage type torch.{name}")
        self.name = name


class _Tensor:
    """A tensor waiting for its storage's bytes (the legacy format stores them after the pickle)."""

    def __init__(self, storage_key, offset, size, stride):
        self.key, self.offset, self.size, self.stride = storage_key, int(offset), tuple(size), tuple(stride)


def _rebuild_tensor(storage, offset, size, stride, *unused):
    return _Tensor(storage, offset, size, stride)


def _rebuild_parameter(data, *unused):
    return data


class _Unpickler(pickle.Unpickler):
    _ALLOWED = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    }

    def __init__(self, f, storages: Dict[str, tuple]):
        super().__init__(f)
        self.storages = storages  # key -> (storage type name, numel)

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return self._ALLOWED[(module, name)]
        if module == "torch" and name.endswith("Storage"):
            return _StorageType(name)
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weight file")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel[, view metadata])
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}")
        if len(pid) < 5 or not isinstance(pid[1], _StorageType) or not isinstance(pid[4], int) or pid[4] < 0:
            raise pickle.UnpicklingError(f"malformed storage id {pid!r}"[:200])
        typ, key, numel = pid[1], str(pid[2]), pid[4]
        self.storages[key] = (typ.name, numel)
        return key


def _array(raw: bytes, type_name: str, numel: int) -> np.ndarray:
    if type_name == "BFloat16Storage":
        bits = np.frombuffer(raw, "<u2", count=numel).astype(np.uint32) << 16
        return bits.view(np.float32)
    return np.frombuffer(raw, np.dtype(_DTYPES[type_name]).newbyteorder("<"), count=numel)


def _tensor_view(t: _Tensor, flat: np.ndarray) -> np.ndarray:
    """The tensor's elements, after checking that its offset, size and stride stay inside its storage (a crafted
    file must not make `as_strided` read outside it)."""
    dims = (t.offset, *t.size, *t.stride)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in dims):
        raise ValueError(f"tensor on storage {t.key}: offset/size/stride are not integers")
    if len(t.size) != len(t.stride) or min(dims, default=0) < 0:
        raise ValueError(f"tensor on storage {t.key}: negative or mismatched size/stride {t.size}/{t.stride}")
    if 0 in t.size:
        return np.zeros(t.size, flat.dtype)
    last = t.offset + sum((n - 1) * s for n, s in zip(t.size, t.stride))
    if last >= flat.size:
        raise ValueError(f"tensor on storage {t.key} reaches element {last}, past its storage of {flat.size}")
    if not t.size:
        return np.array(flat[t.offset])
    return np.lib.stride_tricks.as_strided(flat[t.offset:], t.size, [s * flat.itemsize for s in t.stride]).copy()


def _materialize(obj, arrays: Dict[str, np.ndarray]):
    if isinstance(obj, _Tensor):
        if obj.key not in arrays:
            raise ValueError(f"tensor on storage {obj.key}, which the file does not hold")
        return _tensor_view(obj, arrays[obj.key])
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialize(v, arrays)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_materialize(v, arrays) for v in obj)
    return obj


def _load_zip(path: str):
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if not pkl:
            raise ModelError(f"{path}: a zip file without data.pkl (not a torch.save file)")
        prefix = pkl[0][: -len("data.pkl")]
        storages: Dict[str, tuple] = {}
        obj = _Unpickler(io.BytesIO(z.read(pkl[0])), storages).load()
        arrays = {}
        for key, (typ, numel) in storages.items():
            arrays[key] = _array(z.read(f"{prefix}data/{key}"), typ, numel)
    return obj, arrays


class _PlainUnpickler(pickle.Unpickler):
    """For the legacy format's header pickles (magic number, protocol, system info, storage keys): plain numbers,
    strings, lists and dicts only; any global or persistent id is refused before it is looked up."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"{module}.{name} is not allowed in a weight file's header")

    def persistent_load(self, pid):
        raise pickle.UnpicklingError("a persistent id is not allowed in a weight file's header")


def _plain(f):
    return _PlainUnpickler(f).load()


def _load_legacy(path: str):
    with open(path, "rb") as f:
        if _plain(f) != _LEGACY_MAGIC:
            raise ModelError(f"{path}: not a torch.save file (wrong magic number)")
        _plain(f)  # protocol version
        _plain(f)  # system info (byte order is little-endian on every platform torch saves from here)
        storages: Dict[str, tuple] = {}
        obj = _Unpickler(f, storages).load()
        keys = _plain(f)
        if not isinstance(keys, list):
            raise ValueError("the storage key list is not a list")
        arrays = {}
        for key in keys:
            if str(key) not in storages:
                raise ValueError(f"storage {key} is listed but no tensor uses it")
            typ, declared = storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            if numel < 0 or numel != declared:
                raise ValueError(f"storage {key} holds {numel} elements, its tensors declared {declared}")
            size = numel * (2 if typ == "BFloat16Storage" else np.dtype(_DTYPES[typ]).itemsize)
            left = os.fstat(f.fileno()).st_size - f.tell()
            if size > left:  # checked before reading: a crafted count must not allocate past the file
                raise ModelError(f"{path}: truncated (storage {key} needs {size} bytes, {left} left)")
            raw = f.read(size)
            if len(raw) != size:
                raise ModelError(f"{path}: truncated (storage {key} needs {size} bytes, {len(raw)} left)")
            arrays[str(key)] = _array(raw, typ, numel)
    return obj, arrays


def load_state_dict(path: str) -> Dict[str, np.ndarray]:
    """The state dict saved in a PyTorch `.pth`/`.pt` file, as `{name: float32/int NumPy array}`.

    A checkpoint that wraps the state dict (`{"state_dict": ...}` or `{"model": ...}`) is unwrapped.

    Raises:
        ModelError: the file is missing, truncated, or not a torch.save file of tensors (one line naming it).
    """
    if not os.path.isfile(path):
        raise ModelError(f"{path}: weight file not found")
    try:
        obj, arrays = _load_zip(path) if zipfile.is_zipfile(path) else _load_legacy(path)
        state = _materialize(obj, arrays)
    except ModelError:
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError, IndexError, OverflowError,
            struct.error, zipfile.BadZipFile) as e:
        raise ModelError(f"{path}: cannot read as a PyTorch weight file ({type(e).__name__}: {e})") from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise ModelError(f"{path}: holds a {type(state).__name__}, not a state dict")
    return collections.OrderedDict((k, v) for k, v in state.items() if isinstance(v, np.ndarray))
