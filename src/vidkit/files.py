"""Every file vidkit reads or writes goes through here: one loader per file kind, one atomic writer.

Reading: a loader turns whatever is wrong with a file (missing, a folder in its place, unreadable, zero bytes,
binary garbage, cut short, bad syntax, missing columns or keys, wrongly typed values) into one `VidkitError` line
naming the file and what is wrong. A new file kind gets a loader here (or one built on these) and a row in
tests/test_broken_files.py.

Writing: `atomic_write` writes a temporary file in the same folder, fsyncs it and `os.replace`s it over the
target, so a process killed mid-write leaves the old file or the new one, never half of one. `write_text`,
`write_json`, `write_yaml`, `write_csv`, `save_figure` and `save_safetensors` are built on it.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
from pathlib import Path

from vidkit.errors import VidkitError

TYPE_NAMES = {str: "text", int: "an integer", float: "a number", list: "a list", dict: "a mapping", bool: "true/false"}


# ---------------------------------------------------------------- reading

def readable(path: str | Path, what: str = "file") -> Path:
    """`path` if it is a non-empty file this process may read; else a one-line error saying which it is not."""
    path = Path(path)
    if path.is_dir():
        raise VidkitError(f"{path}: is a folder, expected the {what}")
    if not path.is_file():
        raise VidkitError(f"{path}: file not found" + (f" ({what})" if what != "file" else ""))
    if not os.access(path, os.R_OK):
        raise VidkitError(f"{path}: permission denied (cannot read the {what})")
    if path.stat().st_size == 0:
        raise VidkitError(f"{path}: empty {what} (0 bytes)")
    return path


def read_bytes(path: str | Path, what: str = "file") -> bytes:
    path = readable(path, what)
    try:
        return path.read_bytes()
    except OSError as e:
        raise VidkitError(f"{path}: cannot read the {what} ({e.strerror or e})") from None


def read_text(path: str | Path, what: str = "file") -> str:
    """The file as UTF-8 text; binary garbage is an error, not a UnicodeDecodeError."""
    data = read_bytes(path, what)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise VidkitError(f"{path}: not a text {what} (byte {e.start} is not UTF-8)") from None
    if "\x00" in text:
        raise VidkitError(f"{path}: not a text {what} (it holds NUL bytes)")
    return text


def first_line(error: Exception) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def read_yaml_file(path: str | Path, what: str = "YAML file") -> dict:
    """A YAML file whose top level is a mapping."""
    import yaml
    text = read_text(path, what)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise VidkitError(f"{path}: not valid YAML ({first_line(e)})") from None
    if not isinstance(data, dict):
        raise VidkitError(f"{path}: expected a mapping at top level, got {type(data).__name__}")
    return data


def read_json(path: str | Path, what: str = "JSON file", keys: dict | None = None) -> dict:
    """A JSON object; `keys` {name: type or tuple of types} must be there with those types."""
    text = read_text(path, what)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise VidkitError(f"{path}: not valid JSON ({e.msg}: line {e.lineno} column {e.colno}; cut short?)") from None
    if not isinstance(data, dict):
        raise VidkitError(f"{path}: expected a JSON object, got {type(data).__name__}")
    check_keys(data, keys or {}, path)
    return data


def check_keys(data: dict, keys: dict, path) -> None:
    for name, want in keys.items():
        if name not in data:
            raise VidkitError(f"{path}: missing key {name!r}")
        want = want if isinstance(want, tuple) else (want,)
        value = data[name]
        if not isinstance(value, want) or (isinstance(value, bool) and bool not in want):
            kind = "a number" if float in want else TYPE_NAMES.get(want[0], want[0].__name__)
            raise VidkitError(f"{path}: {name!r} should be {kind}, got {value!r:.40}")


def read_jsonl(path: str | Path, what: str = "JSON-lines file") -> list[dict]:
    """One JSON object per non-blank line (a missing file is an empty list: nothing recorded yet)."""
    if not Path(path).exists():
        return []
    if Path(path).is_file() and Path(path).stat().st_size == 0:
        return []
    records = []
    for n, line in enumerate(read_text(path, what).splitlines(), 1):
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise VidkitError(f"{path}: line {n} is not valid JSON ({e.msg})") from None
            if not isinstance(records[-1], dict):
                raise VidkitError(f"{path}: line {n} is not a JSON object")
    return records


def read_csv(path: str | Path, columns=(), numeric=(), dtype=None, what: str = "CSV file", **read_args):
    """A CSV as a DataFrame: `columns` must be there, `numeric` ones must hold numbers (as numbers);
    `read_args` go to pandas.read_csv (e.g. keep_default_na=False)."""
    import pandas as pd
    text = read_text(path, what)
    try:
        df = pd.read_csv(io.StringIO(text), dtype=dtype, **read_args)
    except (pd.errors.EmptyDataError, pd.errors.ParserError, ValueError) as e:
        raise VidkitError(f"{path}: not a valid CSV ({first_line(e)})") from None
    cut_short(text, path)
    missing = [str(c) for c in columns if c not in df.columns]
    if missing:
        raise VidkitError(f"{path}: missing column{'s' * (len(missing) > 1)} {', '.join(missing)} "
                          f"(have: {', '.join(map(str, df.columns[:8]))})")
    return numeric_columns(df, numeric, path, complete=True)


def cut_short(text: str, path) -> None:
    """A CSV whose last line ends without a newline and has fewer fields than the header was cut mid-row."""
    import csv
    lines = text.splitlines()
    if len(lines) < 2 or text.endswith(("\n", "\r")):
        return
    header, last = next(csv.reader([lines[0]])), next(csv.reader([lines[-1]]), [])
    if len(last) < len(header):
        raise VidkitError(f"{path}: the last row has {len(last)} of {len(header)} fields (cut short?)")


def numeric_columns(df, columns, path, complete: bool = False):
    """`df` with `columns` as numbers; a value that is not one (or, `complete`, an empty one) is an error naming
    the file, column and row."""
    import pandas as pd
    for col in columns:
        values = pd.to_numeric(df[col], errors="coerce")
        bad = values.isna() & (df[col].notna() | complete)
        if bad.any():
            raise VidkitError(f"{path}: column {col!r} should hold numbers, got {df[col][bad].iloc[0]!r:.40} "
                              f"(row {int(bad.to_numpy().argmax()) + 2})")
        df[col] = values
    return df


def read_safetensors(path: str | Path, what: str = "checkpoint") -> dict:
    """A safetensors checkpoint's tensors (torch); a damaged file is one line, not a SafetensorError."""
    from safetensors import SafetensorError
    from safetensors.torch import load as load_bytes
    data = read_bytes(path, what)
    try:
        return load_bytes(data)
    except (SafetensorError, ValueError, TypeError, RuntimeError) as e:  # a damaged header or body
        raise VidkitError(f"{path}: not a readable safetensors {what} ({first_line(e)}); "
                          "cut short or overwritten? re-run the training or copy it again") from None


def load_checkpoint(model, path: str | Path, what: str = "checkpoint"):
    """Load a safetensors checkpoint into `model`; one that does not fit its layers is a one-line error."""
    state = read_safetensors(path, what)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        missing = set(model.state_dict()) - set(state)
        unexpected = set(state) - set(model.state_dict())
        detail = (f"{len(missing)} missing and {len(unexpected)} unexpected tensors" if missing or unexpected
                  else first_line(e)[:200])
        raise VidkitError(f"{path}: does not fit the model ({detail})") from None
    return model


def safetensors_shapes(path: str | Path, what: str = "checkpoint") -> dict:
    """{name: shape} from a safetensors header alone (no tensor is loaded, no torch)."""
    header = read_bytes(path, what)
    try:
        size = int.from_bytes(header[:8], "little")
        if not 0 < size <= len(header) - 8:
            raise ValueError(f"header length {size} does not fit in the file's {len(header)} bytes")
        meta = json.loads(header[8:8 + size])
        tensors = {k: v for k, v in meta.items() if k != "__metadata__"}
        end = max((v["data_offsets"][1] for v in tensors.values()), default=0)
        if 8 + size + end != len(header):
            raise ValueError(f"the header says {8 + size + end} bytes, the file has {len(header)}: cut short?")
        return {k: tuple(v["shape"]) for k, v in tensors.items()}
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        raise VidkitError(f"{path}: not a readable safetensors {what} ({first_line(e)})") from None


def read_arrays(path: str | Path, what: str = "array file", mmap: bool = False) -> dict:
    """{name: numpy array} of a .npy (one array, named ""; memory-mapped with `mmap`), .npz, .pt (a tensor or a
    dict of tensors, weights only) or .safetensors file; a damaged file is one line naming it, never a numpy, zip,
    pickle, torch or safetensors error."""
    import pickle
    import zipfile
    import zlib
    from safetensors import SafetensorError
    path = readable(path, what)
    try:
        return _arrays(path, mmap)
    except (ValueError, TypeError, EOFError, OSError, RuntimeError, KeyError, zipfile.BadZipFile, zlib.error,
            pickle.UnpicklingError, SafetensorError) as e:  # what each of the four readers raises on a bad file
        raise VidkitError(f"{path}: not a readable {what} ({first_line(e)[:120]}); cut short or overwritten?") from None


MAGIC = {".npy": b"\x93NUMPY", ".npz": b"PK", ".pt": (b"PK", b"\x80")}  # a zip archive, or a legacy pickle


def _arrays(path: Path, mmap: bool) -> dict:
    import numpy as np
    suffix = path.suffix.lower()
    with open(path, "rb") as f:
        head = f.read(8)
    if suffix in MAGIC and not head.startswith(MAGIC[suffix]):
        raise VidkitError(f"{path}: not a {suffix} file (it does not start as one); overwritten or renamed?")
    if suffix == ".npy":
        return {"": np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)}
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    if suffix == ".safetensors":
        from safetensors.numpy import load
        return load(read_bytes(path))
    if suffix == ".pt":
        import torch
        obj = torch.load(path, map_location="cpu", weights_only=True)
        obj = obj if isinstance(obj, dict) else {"": obj}
        odd = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
        if odd is not None:
            raise VidkitError(f"{path}: holds a {type(obj[odd]).__name__} ({odd!r}), expected tensors")
        return {k: (v.float() if v.is_floating_point() else v).numpy() for k, v in obj.items()}
    raise VidkitError(f"{path}: not an array file (.npy .npz .pt .safetensors)")


# ---------------------------------------------------------------- writing

@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "w", **open_args):
    """`with atomic_write(p) as f: ...`: f is a temporary file beside `p`; it replaces `p` only when the block
    ends without an error (flushed and fsynced first), so readers and crashes never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **open_args) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~UMASK)  # mkstemp makes it 0600: as a plain open() would
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _umask()  # read once, at import: os.umask cannot be read without setting it (not thread-safe)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_json(path: str | Path, obj, indent: int | None = 1) -> Path:
    return write_text(path, json.dumps(obj, indent=indent))


def write_yaml(path: str | Path, obj, header: str = "", **dump_args) -> Path:
    import yaml
    return write_text(path, header + yaml.safe_dump(obj, sort_keys=False, **dump_args))


def write_csv(df, path: str | Path, **to_csv_args) -> Path:
    """`df.to_csv(path, ...)`, atomically."""
    with atomic_write(path, "w", encoding="utf-8", newline="") as f:
        df.to_csv(f, **to_csv_args)
    return Path(path)


def save_figure(fig, path: str | Path, **savefig_args) -> Path:
    """`fig.savefig(path, ...)`, atomically (the format from the file's suffix)."""
    path = Path(path)
    with atomic_write(path, "wb") as f:
        fig.savefig(f, format=savefig_args.pop("format", path.suffix.lstrip(".") or "png"), **savefig_args)
    return path


def save_safetensors(tensors: dict, path: str | Path) -> Path:
    from safetensors.torch import save
    return write_bytes(path, save(tensors))
