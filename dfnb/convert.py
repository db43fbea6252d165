"""Convert any recognised ONNX folder back into deepfilternet's PyTorch ``DfNet`` -- the official-release import
(:mod:`dfnb.onnx_import`) generalised to every layout :func:`dfnb.formats.recognise` knows -- so that dfnb can
export it exactly (``dfnb export --from FOLDER --variant full|step|h0``) and diagnose it against offline PyTorch
with the same weights.

How each layout becomes the importer's three parts (``enc``, ``erb_dec``, ``df_dec``):

* three files (any variant, any exporter): one graph per part;
* split streaming: ``enc`` = ``enc_conv`` then ``enc_gru`` (their weight ops in this order are the encoder's);
* one graph (``combined``, ``combined_streaming``): every node is given to the part whose outputs it feeds --
  ``m``/``erb_h1`` only: ``erb_dec``; ``coefs``/``df_h1`` only: ``df_dec``; anything feeding ``lsnr``/``h1`` or
  both decoders: ``enc``. Within a part the node order is kept; a merge that re-sorted the nodes across
  independent branches could pair two same-shaped layers wrongly, which is why :func:`convert_folder`'s
  result is checked by running the folder and an exact export of the result side by side
  (:func:`dfnb.diagnose.check_conversion`).

The model is built from the folder's own ``config.ini`` by deepfilternet itself, poisoned with NaN, and
filled; any weight left unfilled, or a count/shape/kernel mismatch between config and graphs, is a
:class:`~dfnb.errors.ModelError`.

Notebook: 07_third_party_folders
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from .errors import ModelError, ModelFolderError
from .formats import FolderFormat, recognise

__all__ = ["folder_parts", "convert_folder"]

_PART_OUTPUTS = {"lsnr": "enc", "h1": "enc", "m": "erb_dec", "erb_h1": "erb_dec", "coefs": "df_dec",
                 "df_h1": "df_dec", "alpha": "df_dec"}


def _split_graph(model: Any) -> dict[str, Any]:
    """One merged graph -> ``{part: graph-like with .graph.node/.graph.initializer}`` by output reachability."""
    from .graph_sizes import node_parts

    g = model.graph
    outs = {o.name: _PART_OUTPUTS[o.name] for o in g.output if o.name in _PART_OUTPUTS}
    nodes: dict[str, list] = {"enc": [], "erb_dec": [], "df_dec": []}
    for n, part in zip(g.node, node_parts(g, outs)):
        nodes[part].append(n)
    # the lsnr scale/offset check of the importer looks for Mul/Add constants in "enc": all nodes stay visible
    return {p: SimpleNamespace(graph=SimpleNamespace(node=ns, initializer=g.initializer)) for p, ns in nodes.items()}


def folder_parts(fmt: FolderFormat) -> dict[str, list[Any]]:
    """The folder's graphs grouped by model part, in the order the importer pairs them with ``DfNet``."""
    import onnx

    def load(role: str) -> Any:
        return onnx.load(str(fmt.path / fmt.files[role]))

    if fmt.format == "step":
        raise ModelFolderError(f"{fmt.path} is a dfnb step folder: its weights come from "
                               f"{(fmt.manifest or {}).get('model', 'the model in manifest.json')}; export that "
                               "model directly (dfnb export --model NAME --variant ...).")
    if "combined" in fmt.files:
        split = _split_graph(load("combined"))
        return {p: [split[p]] for p in ("enc", "erb_dec", "df_dec")}
    enc = [load("enc_conv"), load("enc_gru")] if "enc_conv" in fmt.files else [load("enc")]
    return {"enc": enc, "erb_dec": [load("erb_dec")], "df_dec": [load("df_dec")]}


def convert_folder(folder: Path | str | FolderFormat, *, name: str | None = None) -> Any:
    """deepfilternet's ``DfNet`` filled with every weight of a recognised folder.

    Parameters
    ----------
    folder : path or FolderFormat
        Any folder :func:`dfnb.formats.recognise` knows, with the model's ``config.ini``.
    name : str, optional
        Model name for the result (default: the identified release's, else the folder's name).

    Returns
    -------
    dfnb.models.LoadedModel
        ``net`` (eval, float32), ``spec``, ``folder`` (the source folder, for its config.ini), ``source`` and
        ``source_sha256`` (of the folder's graphs), and ``report`` (what filled what).

    Examples
    --------
    >>> m = convert_folder("deepfilter-rt/models/dfn3_h0")  # doctest: +SKIP
    >>> export_model(m, "step", "models/dfn3_rt_step")  # doctest: +SKIP

    Notebook: 07_third_party_folders
    """
    from .models import LoadedModel, build_model
    from .onnx_import import fill_from_graphs, poison_

    fmt = folder if isinstance(folder, FolderFormat) else recognise(folder)
    if fmt.config is None:
        raise ModelFolderError(f"{fmt.path} has no config.ini: the PyTorch model is built from it. Copy the "
                               "model's config.ini into the folder.")
    w = fmt.weights
    label = name or (w.release if w is not None and w.equal else fmt.path.name)
    net, spec = build_model(fmt.path / "config.ini", name=label)
    poison_(net)
    try:
        report = fill_from_graphs(net, spec, folder_parts(fmt))
    except ModelError as e:
        raise ModelError(f"{fmt.path} ({fmt.format}): {e}") from None
    digest = hashlib.sha256()
    for f in sorted(set(fmt.files.values())):
        digest.update(f.encode() + b"\0" + (fmt.path / f).read_bytes())
    source = f"converted from {fmt.path} ({fmt.format} folder, {fmt.origin})"
    lm = LoadedModel(label, spec, net.eval(), fmt.path, source, digest.hexdigest())
    lm.report = report  # type: ignore[attr-defined]
    return lm
