"""The four official DeepFilterNet releases: their names, tarballs and sha256, and where dfnb finds them — torch-free.

No PyTorch checkpoint of these models can be downloaded here: the weights come from the official ONNX release
tarballs (``*_onnx.tar.gz``), pinned by sha256 (:data:`KNOWN_SHA256`, copied from
``shared/models/onnx-official/SHA256SUMS``). :func:`find_release_tarball` looks for a model's tarball in
``$DFNB_MIRROR/models/onnx-official`` and then in ``<repo>/../shared/models/onnx-official``
(:mod:`dfnb.assets`), and checks its sha256 before anyone reads it. :func:`dfnb.models.load_model` imports a
release into deepfilternet's PyTorch model; :mod:`dfnb.fingerprint` compares any folder's weights with the
releases found here; ``dfnb models`` lists them. For a name whose release is nowhere, deepfilternet's own
checkpoint cache (:func:`deepfilternet_cache`) and download (:func:`download`) come last.

Notebook: 00_tour
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from .assets import mirror_dir, sha256_file, shared_dir
from .compat import import_df
from .errors import AssetNotFoundError, ChecksumError, ModelError

__all__ = ["MODEL_NAMES", "RELEASE_TARBALLS", "KNOWN_SHA256", "SHARED_MODELS_DIR", "check_name", "verify_tarball",
           "search_release", "find_release_tarball", "not_found", "deepfilternet_cache", "download"]

MODEL_NAMES = ("DeepFilterNet3", "DeepFilterNet2", "DeepFilterNet3_ll", "DeepFilterNet2_ll")
RELEASE_TARBALLS = {"DeepFilterNet3": "DeepFilterNet3_onnx.tar.gz", "DeepFilterNet2": "DeepFilterNet2_onnx.tar.gz",
                    "DeepFilterNet3_ll": "DeepFilterNet3_ll_onnx.tar.gz",
                    "DeepFilterNet2_ll": "DeepFilterNet2_onnx_ll.tar.gz"}
# copied from shared/models/onnx-official/SHA256SUMS
KNOWN_SHA256 = {
    "DeepFilterNet2_onnx.tar.gz": "412e81d8d1779b8f925ac4b53472655a9f866c4af73dbf930ab587359f631628",
    "DeepFilterNet2_onnx_ll.tar.gz": "df7ed81f83dce963a4e7802c2aa10d566fa47d58fbedba841d3c791791ee7edc",
    "DeepFilterNet3_ll_onnx.tar.gz": "5998e58e8ba0e09bb76986ef97b84afa065a571ef282d4a1222f341e3251cf3a",
    "DeepFilterNet3_onnx.tar.gz": "c94d91f70911001c946e0fabb4aa9adc37045f45a03b56008cb0c8244cb63616",
}
SHARED_MODELS_DIR = shared_dir() / "models" / "onnx-official"
"""``<repo>/../shared/models/onnx-official``: where the releases are looked for after ``$DFNB_MIRROR``."""


def check_name(name: str) -> None:
    """:class:`~dfnb.errors.ModelError` unless ``name`` is one of :data:`MODEL_NAMES`."""
    if name not in MODEL_NAMES:
        raise ModelError(f"Unknown model '{name}'. Valid names: {', '.join(MODEL_NAMES)} (or pass a path to a release "
                         "tarball, a checkpoint folder or an ONNX release folder).")


def verify_tarball(path: Path, name: str | None = None) -> tuple[str, str]:
    """``(model name, sha256)`` of a release tarball (the release ``name``'s, or whichever its file is), or
    :class:`~dfnb.errors.ChecksumError` when its sha256 is not the pinned one."""
    path = Path(path)
    sha = sha256_file(path)
    by_file = {t: n for n, t in RELEASE_TARBALLS.items()}
    want = KNOWN_SHA256.get(RELEASE_TARBALLS[name] if name else path.name)
    if want is not None and sha != want:
        raise ChecksumError(f"{path} has sha256 {sha}, expected {want} (shared/models/onnx-official/SHA256SUMS): the "
                            "file is corrupt, truncated or a different release. Copy it again from the shared folder "
                            "or DFNB_MIRROR.")
    if want is None:
        hit = [f for f, s in KNOWN_SHA256.items() if s == sha]
        if not hit:
            raise ChecksumError(f"{path} (sha256 {sha}) is not one of the official releases in KNOWN_SHA256. For "
                                "your own export, unpack it and pass the folder (enc.onnx, erb_dec.onnx, df_dec.onnx, "
                                "config.ini).")
        return by_file[hit[0]], sha
    return name or by_file[path.name], sha


def search_release(name: str, tried: list[str]) -> Path | None:
    """The first release tarball of ``name`` in ``$DFNB_MIRROR``, then ``../shared``; appends misses to
    ``tried`` (for the message of :func:`not_found`)."""
    tb, mirror = RELEASE_TARBALLS[name], mirror_dir()
    for label, path in (("$DFNB_MIRROR/models/onnx-official", mirror / "models" / "onnx-official" / tb if mirror
                         else None), ("<repo>/../shared/models/onnx-official", SHARED_MODELS_DIR / tb)):
        if path is not None and path.is_file():
            return path
        tried.append(f"{label}: {path} not found" if path else f"{label}: DFNB_MIRROR is not set")
    return None


def find_release_tarball(name: str) -> tuple[Path, str]:
    """The official release tarball of a model, found and checked.

    Parameters
    ----------
    name : str
        One of :data:`MODEL_NAMES`.

    Returns
    -------
    (pathlib.Path, str)
        The tarball's path (mirror first, then ``../shared``) and its sha256 (checked against
        :data:`KNOWN_SHA256`).

    Raises
    ------
    AssetNotFoundError
        Found nowhere; the message lists every place tried and how to fix it.

    Examples
    --------
    >>> path, sha = find_release_tarball("DeepFilterNet3")  # doctest: +SKIP
    >>> path.name  # doctest: +SKIP
    'DeepFilterNet3_onnx.tar.gz'

    Notebook: 00_tour
    """
    check_name(name)
    tried: list[str] = []
    path = search_release(name, tried)
    if path is None:
        raise AssetNotFoundError(not_found(name, tried))
    return path, verify_tarball(path, name)[1]


def not_found(name: str, tried: list[str]) -> str:
    """The message for weights found nowhere: every place tried, in order, and what to do."""
    lines = "\n".join(f"  {i}. {t}" for i, t in enumerate(tried, 1))
    return (f"No weights found for {name}. Tried, in order:\n{lines}\nTo fix: set DFNB_MIRROR to a folder holding "
            f"models/onnx-official/{RELEASE_TARBALLS[name]}, or put the shared folder beside the checkout "
            f"({SHARED_MODELS_DIR.parent.parent}), or pass a path: load_model('/path/to/{RELEASE_TARBALLS[name]}').")


def deepfilternet_cache(name: str) -> Path:
    """deepfilternet's own cache folder of a model (``df.utils.get_cache_dir()/<name>``; it may not exist)."""
    import_df()
    from df.utils import get_cache_dir

    return Path(get_cache_dir()) / name


def _online(host: str = "github.com") -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
        return True
    except OSError:
        return False


def download(name: str, tried: list[str]) -> Path | None:
    """deepfilternet's own download of a model's checkpoint folder (``df.enhance.maybe_download_model``), only for
    the names it knows, only when github.com answers and ``$DFNB_OFFLINE`` is unset; misses go to ``tried``."""
    import_df()
    from df.enhance import PRETRAINED_MODELS, maybe_download_model

    if name not in PRETRAINED_MODELS:
        tried.append(f"deepfilternet download: not offered for {name} (it knows {', '.join(PRETRAINED_MODELS)})")
    elif os.environ.get("DFNB_OFFLINE"):
        tried.append("deepfilternet download: skipped because DFNB_OFFLINE is set")
    elif not _online():
        tried.append("deepfilternet download: skipped, github.com is not reachable (offline)")
    else:
        try:
            return Path(maybe_download_model(name))
        except (Exception, SystemExit) as e:  # noqa: BLE001 -- deepfilternet calls exit(1) on HTTP errors
            tried.append(f"deepfilternet download of {name}: failed ({e!r})")
    return None
