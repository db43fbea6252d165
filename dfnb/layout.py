"""The state layout: every piece of streaming state, its shape and initial value, the delay and the graph I/O
names — generated once from a model's config, without torch.

A streaming DeepFilterNet must carry eight groups of state from one 10 ms hop to the next, or its output
diverges from the offline model (Notebook 01 measures each):

====================  ===========================================================================  =========
group                 what it is                                                                   owner
====================  ===========================================================================  =========
``stft``              analysis window overlap and synthesis overlap-add memory                     dsp
``norm``              running means of the ERB (mean-norm) and complex (unit-norm) features        dsp
``gru_enc``           encoder GRU hidden state (``h0``/``h1`` of the seed contract)                enc
``gru_erb``           ERB-decoder GRU hidden states                                                erb_dec
``gru_df``            DF-decoder GRU hidden states                                                 df_dec
``conv``              past input frames of every causal conv with a time kernel > 1                enc/…
``lookahead``         the first ``conv_lookahead`` feature frames never reach the encoder           step
``df_buffer``         past (and lookahead) spectra the deep filter reads; for DeepFilterNet2 also  step
                      the masked spectra and coefficients waiting for the DF lookahead
====================  ===========================================================================  =========

:class:`Layout` is the one description of that state. The PyTorch step (:mod:`dfnb.step`), the exports
and their ``manifest.json`` (:mod:`dfnb.export`), every host (:mod:`dfnb.hosts`) and ``dfnb inspect`` read it,
so they cannot drift; a test checks it against the shapes PyTorch itself produces for all four models.

Timing. At hop ``n`` the encoder sees feature frame ``n`` and computes encoder time ``t = n - conv_lookahead``
(offline, ``pad_feat`` drops the first ``conv_lookahead`` feature frames). DeepFilterNet3 filters the raw
spectrum, so the output frame is ``t``; DeepFilterNet2 filters the *masked* spectrum and needs the masks of
``df_lookahead`` further frames, so its output frame is ``t - df_lookahead``. Hence
``delay_frames = conv_lookahead (+ df_lookahead for DeepFilterNet2)`` and streamed audio lags the input by
``delay_frames * hop + (fft_size - hop)`` samples.

Notebook: 01_why_stateless_diverges
"""

from __future__ import annotations

import configparser
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelFolderError

__all__ = ["STATE_GROUPS", "VARIANTS", "VARIANT_GROUPS", "FILES3", "BASE_IO", "MANIFEST_FORMAT", "StateDesc",
           "ModelConfig", "Layout", "delay_frames", "delay_samples"]

STATE_GROUPS = ("stft", "norm", "gru_enc", "gru_erb", "gru_df", "conv", "lookahead", "df_buffer")
VARIANTS = ("stateless", "h0", "gru", "full", "step")
# what each export variant makes explicit as graph inputs/outputs (the rest restarts every call)
VARIANT_GROUPS = {"stateless": (), "h0": ("gru_enc",), "gru": ("gru_enc", "gru_erb", "gru_df"),
                  "full": ("gru_enc", "gru_erb", "gru_df", "conv"),
                  "step": ("gru_enc", "gru_erb", "gru_df", "conv", "lookahead", "df_buffer")}
FILES3 = ("enc.onnx", "erb_dec.onnx", "df_dec.onnx")
# the graphs' own inputs/outputs, before any state: upstream's names (enc/erb_dec/df_dec) and dfnb's step
BASE_IO = {
    "enc.onnx": (("feat_erb", "feat_spec"), ("e0", "e1", "e2", "e3", "emb", "c0", "lsnr")),
    "erb_dec.onnx": (("emb", "e3", "e2", "e1", "e0"), ("m",)),
    "df_dec.onnx": (("emb", "c0"), ("coefs",)),
    "step.onnx": (("spec", "feat_erb", "feat_spec"), ("enh", "lsnr")),
}
MANIFEST_FORMAT = "dfnb-model-folder/1"
_FILE_OF = {"enc": "enc.onnx", "erb_dec": "erb_dec.onnx", "df_dec": "df_dec.onnx"}
_GRU_IO = {"gru_enc": ("h0", "h1"), "gru_erb": ("erb_h0", "erb_h1"), "gru_df": ("df_h0", "df_h1")}
_MEAN_NORM_INIT = (-60.0, -90.0)  # libdf's initial ERB mean-norm state (dB), first band -> last band
_UNIT_NORM_INIT = (0.001, 0.0001)  # libdf's initial unit-norm state, first DF bin -> last DF bin


def _linspace_f32(start: float, stop: float, n: int) -> np.ndarray:
    """``start + i*step`` in float32, the way libdf (ndarray's linspace) builds its initial norm states."""
    if n == 1:
        return np.array([start], np.float32)
    step = (np.float32(stop) - np.float32(start)) / np.float32(n - 1)
    return np.float32(start) + np.arange(n, dtype=np.float32) * step


@dataclass(frozen=True)
class StateDesc:
    """One piece of streaming state: name, shape, group, owner (``enc``/``erb_dec``/``df_dec`` graph, ``step``
    for the deep-filter stage, ``dsp`` for the host's STFT/feature state) and its initial value."""

    name: str
    shape: tuple[int, ...]
    group: str
    owner: str
    init: str = "zeros"
    dtype: str = "float32"

    @property
    def io(self) -> tuple[str, str]:
        """ONNX input/output names: the seed's ``h0 -> h1`` for GRUs, ``<name> -> <name>_next`` otherwise."""
        return _GRU_IO.get(self.group, (self.name, f"{self.name}_next"))

    @property
    def file(self) -> str:
        """The three-file graph that holds this state (``step.onnx`` for the deep-filter stage and DSP)."""
        return _FILE_OF.get(self.owner, "step.onnx")

    def initial(self) -> np.ndarray:
        """The initial value (zeros, or libdf's linear ramps for the feature norms)."""
        if self.name == "erb_norm":
            return _linspace_f32(*_MEAN_NORM_INIT, self.shape[0])
        if self.name == "unit_norm":
            return _linspace_f32(*_UNIT_NORM_INIT, self.shape[0])
        return np.zeros(self.shape, dtype=self.dtype)


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in str(text).split(","))


# key -> (section[s], parser); every key must be present (an edited or empty config.ini is refused, not guessed)
_KEYS = {
    "sr": ("df", int), "fft_size": ("df", int), "hop_size": ("df", int), "nb_erb": ("df", int),
    "nb_df": ("df", int), "min_nb_erb_freqs": ("df", int), "norm_tau": ("df", float),
    "df_order": ("df|deepfilternet", int), "df_lookahead": ("df|deepfilternet", int),
    "lsnr_min": ("df", float), "lsnr_max": ("df", float),
    "conv_lookahead": ("deepfilternet", int), "conv_ch": ("deepfilternet", int),
    "emb_hidden_dim": ("deepfilternet", int), "emb_num_layers": ("deepfilternet", int),
    "df_hidden_dim": ("deepfilternet", int), "df_num_layers": ("deepfilternet", int),
    "conv_kernel": ("deepfilternet", _ints), "conv_kernel_inp": ("deepfilternet", _ints),
    "df_pathway_kernel_size_t": ("deepfilternet", int),
}


@dataclass(frozen=True)
class ModelConfig:
    """The values of a model's ``config.ini`` that streaming depends on, read without torch or deepfilternet.

    The same attribute names as :class:`dfnb.models.ModelSpec`, so :class:`Layout` takes either.
    """

    family: str
    sr: int
    fft_size: int
    hop_size: int
    nb_erb: int
    nb_df: int
    min_nb_erb_freqs: int
    norm_tau: float
    df_order: int
    df_lookahead: int
    lsnr_min: float
    lsnr_max: float
    conv_lookahead: int
    conv_ch: int
    emb_hidden_dim: int
    emb_num_layers: int
    df_hidden_dim: int
    df_num_layers: int
    conv_kernel: tuple[int, ...]
    conv_kernel_inp: tuple[int, ...]
    df_pathway_kernel_size_t: int
    convt_kernel: tuple[int, ...] = (1, 3)
    path: str = field(default="", compare=False)

    @classmethod
    def read(cls, path: Path | str) -> ModelConfig:
        """Parse ``config.ini``; :class:`~dfnb.errors.ModelFolderError` names every missing or unreadable key."""
        path = Path(path)
        cp = configparser.ConfigParser()
        try:
            with open(path, encoding="utf-8") as fh:
                cp.read_file(fh)
        except (OSError, UnicodeDecodeError, configparser.Error) as e:
            raise ModelFolderError(f"{path} is not a readable DeepFilterNet config.ini ({e}); copy the config.ini "
                                   "that came with the model into the folder.") from None
        family = cp.get("train", "model", fallback="").strip()
        if family not in ("deepfilternet3", "deepfilternet2"):
            raise ModelFolderError(f"{path}: [train] model = {family or '(missing)'}; dfnb streams deepfilternet3 "
                                   "and deepfilternet2 models. Use the config.ini that came with the model.")
        vals: dict[str, Any] = {}
        bad = []
        for key, (secs, parse) in _KEYS.items():
            sec = next((s for s in secs.split("|") if cp.has_option(s, key)), secs.split("|")[0])
            try:  # DeepFilterNet2's config keeps df_order/df_lookahead under [deepfilternet]
                vals[key] = parse(cp.get(sec, key).strip())
            except (configparser.Error, ValueError) as e:
                bad.append(f"[{sec}] {key} ({'missing' if isinstance(e, configparser.Error) else 'not a number'})")
        ck = cp.get("deepfilternet", "convt_kernel", fallback="")
        # no convt_kernel in the released configs: deepfilternet3's ModelParams default is (1, 3); deepfilternet2's
        # transposed convs use conv_kernel
        default = vals.get("conv_kernel", (1, 3)) if family == "deepfilternet2" else (1, 3)
        try:
            vals["convt_kernel"] = _ints(ck) if ck.strip() else default
        except ValueError:
            bad.append("[deepfilternet] convt_kernel (not a number)")
        if bad:
            raise ModelFolderError(f"{path} lacks {', '.join(bad)}; every model folder needs the complete "
                                   "config.ini of its model (copy it from the release).")
        return cls(family=family, path=str(path), **vals)


def delay_frames(spec: Any) -> int:
    """Hops between a frame entering the stream and its enhanced frame leaving it (see module docstring)."""
    extra = spec.df_lookahead if spec.family == "deepfilternet2" else max(0, spec.df_lookahead - spec.conv_lookahead)
    return int(spec.conv_lookahead + extra)


def delay_samples(spec: Any) -> int:
    """Samples by which streamed audio lags the input (offline output is aligned with the input)."""
    return delay_frames(spec) * spec.hop_size + (spec.fft_size - spec.hop_size)


def _conv_table(s: Any) -> list[tuple[str, int, int, int]]:
    """(module, time kernel, input channels, input width) of every conv block, in deepfilternet's module order
    (``Encoder``/``ErbDecoder``/``DfDecoder`` of both families); blocks with a time kernel of 1 carry no state."""
    ch, e, d = s.conv_ch, s.nb_erb, s.nb_df
    k, kin, kt = s.conv_kernel[0], s.conv_kernel_inp[0], s.convt_kernel[0]
    return [("enc.erb_conv0", kin, 1, e), ("enc.erb_conv1", k, ch, e), ("enc.erb_conv2", k, ch, e // 2),
            ("enc.erb_conv3", k, ch, e // 4), ("enc.df_conv0", kin, 2, d), ("enc.df_conv1", k, ch, d),
            ("erb_dec.convt3", k, ch, e // 4), ("erb_dec.convt2", kt, ch, e // 4), ("erb_dec.convt1", kt, ch, e // 2),
            ("erb_dec.conv0_out", k, ch, e), ("df_dec.df_convp", s.df_pathway_kernel_size_t, ch, d)]


@dataclass(frozen=True)
class Layout:
    """Every state of one model, in the order the step graph takes them, plus the delay.

    Build it with :meth:`of` from a :class:`ModelConfig` (a folder's ``config.ini``) or a
    :class:`dfnb.models.ModelSpec`.

    Examples
    --------
    >>> lay = Layout.of(ModelConfig.read("models/dfn3_full/config.ini"))  # doctest: +SKIP
    >>> [d.name for d in lay.for_variant("h0")]  # doctest: +SKIP
    ['enc_emb_gru']
    """

    family: str
    states: tuple[StateDesc, ...]
    delay_frames: int
    delay_samples: int
    hop_size: int
    conv_lookahead: int
    df_lookahead: int
    df_order: int

    @classmethod
    def of(cls, spec: Any) -> Layout:
        """The layout of a model from its config values (see :func:`_conv_table` for the conv rules).

        Parameters
        ----------
        spec : ModelConfig or dfnb.models.ModelSpec
            Anything with the config values (``fft_size``, ``conv_lookahead``, ``emb_hidden_dim``, ...).

        Returns
        -------
        Layout
        """
        f = spec.fft_size // 2 + 1
        L, o, dfl = spec.conv_lookahead, spec.df_order, spec.df_lookahead
        st = [StateDesc("enc_emb_gru", (1, 1, spec.emb_hidden_dim), "gru_enc", "enc"),
              StateDesc("erb_dec_emb_gru", (spec.emb_num_layers - 1, 1, spec.emb_hidden_dim), "gru_erb", "erb_dec"),
              StateDesc("df_dec_df_gru", (spec.df_num_layers, 1, spec.df_hidden_dim), "gru_df", "df_dec")]
        for module, kt, ch, width in _conv_table(spec):
            if kt > 1:
                st.append(StateDesc(module.replace(".", "_"), (1, ch, kt - 1, width), "conv", module.split(".")[0]))
        if spec.family == "deepfilternet3":
            st.append(StateDesc("spec_buf", (1, 1, L + o - dfl, f, 2), "df_buffer", "step"))
        else:
            st += [StateDesc("spec_buf", (1, 1, L + 1, f, 2), "df_buffer", "step"),
                   StateDesc("masked_buf", (1, 1, o, f, 2), "df_buffer", "step"),
                   StateDesc("coef_buf", (1, o, dfl + 1, spec.nb_df, 2), "df_buffer", "step")]
        st.append(StateDesc("warmup", (1,), "lookahead", "step", f"zeros; counts hops up to conv_lookahead={L}"))
        m = spec.fft_size - spec.hop_size
        st += [StateDesc("analysis_mem", (m,), "stft", "dsp"), StateDesc("synthesis_mem", (m,), "stft", "dsp"),
               StateDesc("erb_norm", (spec.nb_erb,), "norm", "dsp", "linspace(-60, -90, nb_erb)"),
               StateDesc("unit_norm", (spec.nb_df,), "norm", "dsp", "linspace(0.001, 0.0001, nb_df)")]
        return cls(spec.family, tuple(st), delay_frames(spec), delay_samples(spec), spec.hop_size, L, dfl, o)

    # -- views ------------------------------------------------------------------------------------
    @property
    def model_states(self) -> tuple[StateDesc, ...]:
        """The states inside the model graphs and the deep-filter stage (everything but the DSP)."""
        return tuple(d for d in self.states if d.owner != "dsp")

    def __getitem__(self, name: str) -> StateDesc:
        for d in self.states:
            if d.name == name:
                return d
        raise KeyError(name)

    def for_variant(self, variant: str) -> list[StateDesc]:
        """The model-side states that ``variant`` makes explicit as graph inputs/outputs, in graph order."""
        if variant not in VARIANT_GROUPS:
            raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        groups = VARIANT_GROUPS[variant]
        if variant == "step":
            return list(self.model_states)
        return [d for d in self.model_states if d.group in groups and d.owner in _FILE_OF]

    def host_states(self, variant: str) -> list[StateDesc]:
        """What a host itself must keep for ``variant`` (DSP; plus spectrum buffer and warm-up for ``full``)."""
        if variant == "step":
            return [d for d in self.states if d.owner == "dsp"]
        return [d for d in self.states if d.owner in ("dsp", "step")]

    def graph_io(self, variant: str) -> dict[str, tuple[list[str], list[str]]]:
        """File -> (input names, output names) of an export of ``variant``, states after the base I/O."""
        states = self.for_variant(variant)
        files = ("step.onnx",) if variant == "step" else FILES3
        out = {}
        for f in files:
            mine = states if f == "step.onnx" else [d for d in states if d.file == f]
            ins, outs = BASE_IO[f]
            out[f] = ([*ins, *(d.io[0] for d in mine)], [*outs, *(d.io[1] for d in mine)])
        return out

    def manifest_states(self, variant: str) -> list[dict]:
        """The ``states`` list of a folder's manifest.json: graph states with their I/O names, then host states."""
        rows = [{"name": d.name, "input": d.io[0], "output": d.io[1],
                 "file": "step.onnx" if variant == "step" else d.file, "owner": d.owner, "group": d.group,
                 "shape": list(d.shape), "dtype": d.dtype, "init": d.init} for d in self.for_variant(variant)]
        rows += [{"name": d.name, "where": "host", "group": d.group, "shape": list(d.shape), "dtype": d.dtype,
                  "init": d.init} for d in self.host_states(variant)]
        return rows
