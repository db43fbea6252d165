"""Put what dfnb makes into place atomically, and never replace what dfnb did not make.

Exports (:func:`dfnb.export.export_model`), imported checkpoints (:func:`dfnb.models.load_model`), enhanced
audio (:func:`dfnb.audio.write_audio`) and the demo's table are built under a temporary name beside their
target (``.<name>.tmp-<pid>-<random>``) and renamed into place only when complete (:func:`building_folder`,
:func:`building_file`). ``force`` / ``overwrite`` replace only what dfnb wrote (:func:`owner_of`):

==========  ==============================================================================================
``export``  a folder whose ``manifest.json`` is a JSON object with ``"format": "dfnb-model-folder/1"``
``import``  a folder whose ``provenance.json`` is a JSON object with ``dfnb_version`` and ``source_sha256``
``empty``   an empty folder (nothing to lose)
``file``    a file tagged ``written by dfnb``: audio in its ``comment`` (wav, flac, ... via soundfile), PNG
            in a ``tEXt`` chunk, JSON as a top-level ``"written_by"``, HTML in ``<meta name="generator">``
==========  ==============================================================================================

Never replaced, whatever the flags: a symbolic link, a file where a folder goes and the reverse, ``/``, the
home folder, the working folder and the folders above it, a source being read and the folders holding it.

Without ``force`` the temporary is renamed with ``renameat2(RENAME_NOREPLACE)``, which fails if anything
appeared at the target meanwhile: of two concurrent runs aiming at one target exactly one wins and the other
gets a clear error. With ``force`` it is swapped in with ``RENAME_EXCHANGE`` (the target never disappears)
and what came out is checked again, and swapped back if it is not dfnb's. Without renameat2 (not Linux, or
a filesystem without it) an ``flock`` on the parent folder serialises dfnb processes around a check and a
plain rename. Permissions follow the umask. A killed run leaves the previous target intact; the next run
removes the temporaries of dead runs, and only those.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import secrets
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path

from . import __version__
from .errors import DfnbError, ExportError
from .layout import MANIFEST_FORMAT

__all__ = ["MARKER", "FOLDER_KINDS", "marker_text", "current_umask", "owner_of", "check_target",
           "building_folder", "building_file", "cleanup_stale", "prepare_folder"]

MARKER = "written by dfnb"  # the tag that marks a file as dfnb's (followed by the version: marker_text)
FOLDER_KINDS = ("export", "import", "empty")  # what force may replace where a folder goes
_AUDIO_SUFFIXES = {".wav", ".flac", ".ogg", ".oga", ".w64", ".rf64", ".aif", ".aiff", ".caf", ".au"}
_LACKS = {"export": "no manifest.json of a dfnb export", "import": "no provenance.json of a dfnb import",
          "empty": "not empty"}
_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100


def marker_text() -> str:
    """``"written by dfnb <version>"``: what dfnb puts into the metadata of every file it writes."""
    return f"{MARKER} {__version__}"


def current_umask() -> int:
    """The process umask, read without changing it (``/proc/self/status``; elsewhere set and restored)."""
    try:
        return int(next(ln for ln in Path("/proc/self/status").read_text().splitlines()
                        if ln.startswith("Umask:")).split()[1], 8)
    except (OSError, ValueError, StopIteration):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


def _json_object(path: Path) -> dict:
    """The JSON object in ``path``; {} if missing, unreadable or not an object (e.g. a list)."""
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _file_is_marked(p: Path) -> bool:
    suffix = p.suffix.lower()
    try:
        if suffix in _AUDIO_SUFFIXES:
            import soundfile as sf

            with sf.SoundFile(str(p)) as f:
                return (f.comment or "").startswith(MARKER)
        if suffix == ".json":
            return str(_json_object(p).get("written_by", "")).startswith(MARKER)
        with open(p, "rb") as f:
            head = f.read(8192)
    except Exception:  # noqa: BLE001 -- unreadable, not audio, ...: not provably dfnb's
        return False
    if suffix == ".png":
        return b"\x00" + MARKER.encode() in head  # tEXt chunk: keyword NUL text
    if suffix in (".html", ".htm"):
        return f'<meta name="generator" content="{MARKER}'.encode() in head
    return False


def owner_of(path: Path | str) -> str | None:
    """``"export"``, ``"import"``, ``"empty"`` (folders), ``"file"`` (a tagged file) or None (not dfnb's)."""
    p = Path(path)
    if p.is_symlink() or not p.exists():
        return None
    if p.is_dir():
        if _json_object(p / "manifest.json").get("format") == MANIFEST_FORMAT:
            return "export"
        if {"dfnb_version", "source_sha256"} <= _json_object(p / "provenance.json").keys():
            return "import"
        with contextlib.suppress(OSError):
            return "empty" if not any(p.iterdir()) else None
        return None
    return "file" if p.is_file() and _file_is_marked(p) else None


def _protected(p: Path) -> str | None:
    r, cwd, home = p.resolve(), Path.cwd().resolve(), Path(os.path.expanduser("~")).resolve()
    if r == Path(r.anchor) or r == home:
        return "the root folder" if r == Path(r.anchor) else "your home folder"
    if r == cwd or r in cwd.parents:
        return "the working folder" if r == cwd else "a folder holding the working folder"
    return None


def _holds_source(p: Path, sources: Iterable) -> str | None:
    """Why ``p`` must not be replaced because of a source being read (None if it may)."""
    r = p.resolve()
    for s in (Path(s) for s in sources if s is not None):
        rs = s.resolve()
        if r == rs or (p.exists() and s.exists() and os.path.samefile(p, s)):
            return f"the source {s}"
        if r in rs.parents:
            return f"a folder holding the source {s}"
    return None


def check_target(target: Path | str, *, folder: bool, replace: bool, kinds: tuple = FOLDER_KINDS,
                 sources: Iterable = (), error: type[DfnbError] = ExportError, make_parent: bool = True,
                 force_hint: str = "--force (force=True)", what: str = "--out") -> Path:
    """Raise ``error`` unless ``target`` may receive a new folder (``folder=True``) or file; return it.

    The target may be missing, or (only with ``replace``) hold something of one of ``kinds`` (see
    :func:`owner_of`; files are always of kind ``"file"``). Its parent must be (``make_parent``: is made) a
    writable folder; ``/``, the home and working folders and their ancestors, symbolic links and the
    ``sources`` (or folders holding them) are refused. ``force_hint`` / ``what`` word the advice. Temporaries
    of dead runs beside the target are removed (:func:`cleanup_stale`).
    """
    p = Path(target).expanduser()
    noun, other = ("folder", "file") if folder else ("file", "folder")
    why = _protected(p)
    if why:
        raise error(f"{p} is {why}: dfnb never writes over it; choose a new {noun} (e.g. {p / 'dfnb_out'}).")
    src = _holds_source(p, sources)
    if src:
        raise error(f"{p} is {src}, which dfnb reads in this run; choose another {what}.")
    if p.parent.is_dir():
        cleanup_stale(p.parent, p.name)
    if p.is_symlink():
        raise error(f"{p} is a symbolic link; dfnb does not replace links: pass the real path or another {what}.")
    if p.exists():
        if p.is_dir() != folder:
            shown = "not a regular file" if not folder else f"a {other}, not a {noun}"
            raise error(f"{p} exists and is {shown}; dfnb never replaces a {other} with a {noun}: "
                        f"choose another {what}.")
        kind = owner_of(p)
        owned = kind is not None and (not folder or kind in kinds)
        if not replace:
            flag = force_hint.split(" ")[0]
            tail = "" if owned else f" (it was not written by dfnb, so {flag} would not replace it either)"
            raise error(f"{p} already exists; pass {force_hint} to replace it, or choose another {what}{tail}.")
        if not owned and kind is not None:
            raise error(f"{p} holds a dfnb {kind} folder, and only {' or '.join(kinds)} folders are replaced "
                        f"here: move it away yourself or choose another {what}.")
        if not owned:
            lacks = ", ".join(_LACKS[k] for k in kinds) if folder else f"its metadata lacks dfnb's '{MARKER}' tag"
            raise error(f"{p} was not written by dfnb ({lacks}), so dfnb does not replace it: move it away "
                        f"yourself or choose another {what}.")
    parent = p.parent
    if make_parent:
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise error(f"cannot create {parent} ({e.strerror}); choose a writable {what} folder.") from None
    elif not parent.is_dir():
        raise error(f"cannot write {p}: folder {parent} does not exist; create it first.")
    _probe_writable(parent, error, what)
    return p


def _probe_writable(parent: Path, error: type[DfnbError], what: str) -> None:
    if not os.access(parent, os.W_OK | os.X_OK):
        raise error(f"{parent} is not writable; choose a writable {what} folder or fix its permissions.")
    probe = parent / f".dfnb-probe-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except OSError as e:  # read-only mount, /proc, a folder os.access calls writable that is not
        raise error(f"cannot write in {parent} ({e.strerror}); choose a writable {what} folder.") from None
    os.unlink(probe)


def prepare_folder(folder: Path | str, *, error: type[DfnbError] = ExportError, what: str = "--out") -> Path:
    """Make sure ``folder`` is a writable folder that dfnb may put files into (made if missing)."""
    p = Path(folder).expanduser()
    if p.exists() and not p.is_dir():
        raise error(f"{p} is a file, not a folder; choose another {what} folder.")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise error(f"cannot create {p} ({e.strerror}); choose a writable {what} folder.") from None
    _probe_writable(p, error, what)
    return p


def _run_state(p: Path) -> str:
    """``"live"``, ``"dead"`` or ``"unknown"``: the run a temporary belongs to (the pid in its name
    ``.x.tmp-<pid>-<rand>``, else in its ``.pid`` file)."""
    head, sep, _ = p.name.rsplit(".tmp-" if ".tmp-" in p.name else ".old-", 1)[-1].partition("-")
    try:
        pid = int(head) if sep and head.isdigit() else int((p / ".pid").read_text())
    except (OSError, ValueError):
        return "unknown"
    try:
        os.kill(pid, 0) if pid > 0 else None
    except ProcessLookupError:
        return "dead"
    except PermissionError:  # another user's live process
        pass
    return "live" if pid > 0 else "dead"


def _remove(p: Path) -> None:
    """Remove a file, or a folder with its ownership marker last (so a killed removal is still recognised)."""
    if not p.is_dir() or p.is_symlink():
        p.unlink(missing_ok=True)
        return
    keep = {"manifest.json", "provenance.json"}
    for child in list(p.iterdir()):
        if child.name not in keep:
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink(missing_ok=True)
    shutil.rmtree(p, ignore_errors=True)


def cleanup_stale(parent: Path | str, name: str) -> None:
    """Remove temporaries of dead runs beside ``parent/name``; restore a target a killed swap left aside.

    A temporary is removed only if it is an empty folder of no live run, or its run is dead and it is a file,
    holds a ``.pid`` file or is a dfnb folder; a live run's temporaries and anything unrecognised stay.
    """
    parent, target = Path(parent), Path(parent) / name
    for p in sorted(parent.glob(f".{name}.tmp-*")):
        state, kind = _run_state(p), owner_of(p)
        dead_run = state == "dead" and (p.is_file() or (p / ".pid").is_file() or kind)
        if (kind == "empty" and state != "live") or dead_run:
            _remove(p)
    for p in sorted(parent.glob(f".{name}.old-*")):
        if _run_state(p) == "live":
            continue
        if not target.exists() and not target.is_symlink():
            os.rename(p, target)  # a run killed between the two renames of the fallback swap
        elif p.is_file() or owner_of(p) in FOLDER_KINDS:
            _remove(p)


def _beside(target: Path, tag: str) -> Path:
    """``.<name>.<tag>-<pid>-<random><suffix>``: the suffix kept, so a file's tag stays readable."""
    return target.parent / f".{target.name}.{tag}-{os.getpid()}-{secrets.token_hex(4)}{target.suffix}"


def _renameat2(src: Path, dst: Path, flags: int) -> bool:
    """True when done; False when renameat2 is not available here; OSError when it refused.

    Hand-written with ctypes because Python's ``os`` has no renameat2 (glibc >= 2.28 exports it)."""
    fn = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None) if os.name == "posix" else None
    if fn is None:
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(src), _AT_FDCWD, os.fsencode(dst), flags) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(dst))


@contextlib.contextmanager
def _parent_lock(parent: Path) -> Iterator[None]:
    """An exclusive flock on the parent folder (POSIX): serialises the placements of dfnb processes there."""
    import fcntl

    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _place(tmp: Path, target: Path, *, folder: bool, replace: bool, kinds: tuple, sources: Iterable,
           error: type[DfnbError], force_hint: str, what: str) -> None:
    """Rename ``tmp`` to ``target``: no-replace, or exchange and check what came out (see module doc)."""
    appeared = error(f"{target} appeared while dfnb was writing it (another run, or made by hand); it was left "
                     f"untouched: choose another {what}, or pass {force_hint} to replace a dfnb output.")
    with _parent_lock(target.parent):
        if not replace and (target.exists() or target.is_symlink()):
            raise appeared
        check_target(target, folder=folder, replace=replace, kinds=kinds, sources=sources, error=error,
                     make_parent=False, force_hint=force_hint, what=what)
        if not (target.exists() or target.is_symlink()):
            try:
                if not _renameat2(tmp, target, _RENAME_NOREPLACE):
                    if folder:
                        os.rename(tmp, target)  # under the lock; cannot replace a non-empty folder
                    else:
                        os.link(tmp, target)  # fails if the target exists
                        os.unlink(tmp)
                return
            except OSError as e:
                if e.errno in (errno.EEXIST, errno.ENOTEMPTY):
                    raise appeared from None
                raise
        # replace and the target was checked to be dfnb's: swap, then check what came out
        aside = _beside(target, "old")
        if _renameat2(tmp, target, _RENAME_EXCHANGE):
            os.rename(tmp, aside)
        else:
            os.rename(target, aside)
            os.rename(tmp, target)
        came_out = owner_of(aside)
        if aside.is_dir() != folder or came_out is None or (folder and came_out not in kinds):
            os.rename(target, tmp)  # swapped in behind our back: put it back, ours is removed by the caller
            os.rename(aside, target)
            raise error(f"{target} was replaced by something dfnb did not write while dfnb was writing it; it was "
                        f"left as it is: move it away yourself or choose another {what}.")
        _remove(aside)


@contextlib.contextmanager
def _building(target: Path | str, folder: bool, **opts) -> Iterator[Path]:
    target = Path(target).expanduser()
    opts = dict(opts, folder=folder, sources=list(opts["sources"]))
    check_target(target, make_parent=folder, **opts)
    tmp, mode = _beside(target, "tmp"), (0o777 if folder else 0o666) & ~current_umask()
    try:
        os.mkdir(tmp, mode) if folder else os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode))
    except OSError as e:
        raise opts["error"](f"cannot write in {target.parent} ({e.strerror}); choose a writable {opts['what']} "
                            "folder.") from None
    try:
        if folder:
            (tmp / ".pid").write_text(str(os.getpid()))
        yield tmp
        if folder:
            (tmp / ".pid").unlink()
        _place(tmp, target, **opts)
    finally:
        if tmp.exists() or tmp.is_symlink():
            _remove(tmp)


def building_folder(target: Path | str, *, replace: bool = False, kinds: tuple = FOLDER_KINDS,
                    sources: Iterable = (), error: type[DfnbError] = ExportError,
                    force_hint: str = "--force (force=True)",
                    what: str = "--out") -> contextlib.AbstractContextManager[Path]:
    """A context manager: a fresh temporary folder beside ``target``, put in place when the block succeeds.

    Checks ``target`` first (:func:`check_target`, which also removes temporaries of dead runs); the
    temporary gets the umask's permissions and a ``.pid`` file (removed before placement). On any exception
    (Ctrl-C included) the temporary is removed and the target is untouched.

    Examples
    --------
    >>> with building_folder("models/dfn3_full", replace=False) as tmp:  # doctest: +SKIP
    ...     (tmp / "config.ini").write_text(text)
    """
    return _building(target, True, replace=replace, kinds=kinds, sources=sources, error=error,
                     force_hint=force_hint, what=what)


def building_file(target: Path | str, *, replace: bool = False, sources: Iterable = (),
                  error: type[DfnbError] = ExportError, force_hint: str = "overwrite=True (CLI: --force)",
                  what: str = "output path") -> contextlib.AbstractContextManager[Path]:
    """A context manager: a temporary path beside ``target`` to write a file to, put in place on success.

    The file must end up tagged (see the module doc) for a later ``replace`` to accept it; its permissions
    follow the umask; the parent folder must exist. Same checks and atomicity as :func:`building_folder`.

    Examples
    --------
    >>> with building_file("out/fidelity.json", replace=True) as tmp:  # doctest: +SKIP
    ...     tmp.write_text(json.dumps({"written_by": marker_text(), "rows": rows}))
    """
    return _building(target, False, replace=replace, kinds=("file",), sources=sources, error=error,
                     force_hint=force_hint, what=what)
