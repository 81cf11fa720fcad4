"""The SSL task: one registry per slot and ``build_model`` (``python -m espnet2.bin.ssl_train``).

Registries (``--<slot>`` / ``--<slot>_conf``): mix (waveform augmentation of the student's
input), frontend, specaug, normalize, preencoder, encoder.
Losses and utils are list options (ESPnet G2 form)::

    loss: [{name: hubert, conf: {num_classes: 500, final_dim: 256}, weight: 1.0}]
    util: [{name: mask, conf: {mask_prob: 0.8}}, {name: ema, conf: {ema_decay: 0.999}}]

A new loss is one file plus one line in ``loss_choices``. A util is built when some loss needs
it (``needs.mask`` -> ``mask``, ``needs.teacher`` -> ``ema``), with its defaults when the
``util`` list does not configure it.

Token list and ``num_classes`` (HuBERT-style label losses only, ``needs.labels``): the list is
one token per line, id = line number. hubert1's ``tokens.txt`` holds the K cluster ids ``0..K-1``
and then special tokens (``<sos/eos>``, ``<unk>``; any ``<...>`` token counts as special). Labels
are the non-special tokens; ``num_classes`` defaults to K and must be >= (largest id of a
non-special token) + 1, so every label id has an output class. Label-free losses (DinoSR)
need no token list.
"""

from __future__ import annotations

import argparse
import logging
import re
from functools import partial
from typing import Any

from espnet2.asr.encoder.abs_encoder import AbsEncoder
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from espnet2.asr.preencoder.abs_preencoder import AbsPreEncoder
from espnet2.asr.specaug.abs_specaug import AbsSpecAug
from espnet2.layers.abs_normalize import AbsNormalize
from espnet2.ssl.loss.abs_loss import AbsSSLLoss
from espnet2.tasks.abs_task import AbsTask
from espnet2.train.class_choices import ClassChoices, check_conf_keys, constructor_defaults
from espnet2.utils import config as cfg
from espnet2.utils.config import (
    ConfigError,
    NestedDictAction,
    YamlListAction,
    int_or_none,
    str2bool,
    suggestion,
)

logger = logging.getLogger(__name__)

mix_choices = ClassChoices("mix", {
    "utterance": "espnet2.ssl.utils.mix:UtteranceMixing",
}, type_check=None, default=None, optional=True)
frontend_choices = ClassChoices("frontend", {
    "wav2vec_cnn": "espnet2.asr.frontend.cnn:CNNFrontend",
    "default": "espnet2.asr.frontend.default:DefaultFrontend",
}, type_check=AbsFrontend, default="wav2vec_cnn")
specaug_choices = ClassChoices("specaug", {
    "specaug": "espnet2.asr.specaug.specaug:SpecAug",
}, type_check=AbsSpecAug, default=None, optional=True)
normalize_choices = ClassChoices("normalize", {
    "utterance_mvn": "espnet2.layers.utterance_mvn:UtteranceMVN",
    "global_mvn": "espnet2.layers.global_mvn:GlobalMVN",
}, type_check=AbsNormalize, default="utterance_mvn", optional=True)
preencoder_choices = ClassChoices("preencoder", {
    "linear": "espnet2.asr.preencoder.linear:LinearProjection",
}, type_check=AbsPreEncoder, default="linear", optional=True)
encoder_choices = ClassChoices("encoder", {
    "transformer": "espnet2.asr.encoder.transformer_encoder:TransformerEncoder",
    "conformer": "espnet2.asr.encoder.conformer_encoder:ConformerEncoder",
    "e_branchformer": "espnet2.asr.encoder.e_branchformer_encoder:EBranchformerEncoder",
}, type_check=AbsEncoder, default="transformer")
loss_choices = ClassChoices("loss", {
    "hubert": "espnet2.ssl.loss.hubert:HuBERTLoss",
    "dinosr": "espnet2.ssl.loss.dinosr:DinoSRLoss",
    "data2vec": "espnet2.ssl.loss.data2vec:Data2VecLoss",
    "utt_dino": "espnet2.ssl.loss.utt_dino:UtteranceDINOLoss",
}, type_check=AbsSSLLoss, default="hubert")
util_choices = ClassChoices("util", {
    "mask": "espnet2.ssl.utils.mask:Masking",
    "ema": "espnet2.ssl.utils.ema:EMATeacher",
}, type_check=None, default="mask")

#: constructor arguments build_model fills in (never read from the config)
FILLED = {
    "mix": set(),
    "frontend": set(),
    "preencoder": {"input_size"},
    "encoder": {"input_size"},
    "loss": {"encoder_output_size"},
    "util": {"encoder_embed_dim", "student"},
}
_LOSS_ENTRY_KEYS = ("name", "conf", "weight")
_UTIL_ENTRY_KEYS = ("name", "conf")
_SPECIAL_TOKEN = re.compile(r"^<.*>$")


def _entries(value: list, kind: str, keys: tuple[str, ...], choices: ClassChoices,
             problems: list[str]) -> list[dict]:
    """Validate ``[{name, conf, ...}]`` entries; returns normalised copies."""
    out = []
    for i, entry in enumerate(value or []):
        where = f"{kind}[{i}]"
        if isinstance(entry, str):
            entry = {"name": entry}
        if not isinstance(entry, dict) or "name" not in entry:
            problems.append(f"{where}: expected {{name: ..., conf: {{...}}}}, got {entry!r}")
            continue
        for k in entry:
            if k not in keys:
                problems.append(f"{where}: unknown key '{k}'{suggestion(k, keys)}; "
                                f"valid keys: {', '.join(keys)}")
        try:
            name = choices.normalize(entry["name"])
            cls = choices.get_class(name)
        except (ValueError, ImportError, AttributeError) as e:
            problems.append(f"{where}: {e}")
            continue
        conf = entry.get("conf") or {}
        if not isinstance(conf, dict):
            problems.append(f"{where}.conf: expected a mapping, got {conf!r}")
            continue
        problems += check_conf_keys(cls, conf, f"{where}.conf ({name})", FILLED[kind])
        e = {"name": name, "conf": dict(conf)}
        if "weight" in keys:
            try:
                e["weight"] = float(entry.get("weight", 1.0))
            except (TypeError, ValueError):
                problems.append(f"{where}.weight: expected a number, got {entry.get('weight')!r}")
                continue
        out.append(e)
    return out


def loss_needs(losses: list[dict]):
    """Union of the ``needs`` of the configured losses -> (labels, mask, teacher)."""
    needs = [loss_choices.get_class(e["name"]).needs for e in losses]
    return (any(n.labels for n in needs), any(n.mask for n in needs),
            any(n.teacher for n in needs))


def required_utils(losses: list[dict], utils: list[dict]) -> list[dict]:
    """The utils to build: configured ones that some loss needs, plus needed defaults."""
    _, mask, teacher = loss_needs(losses)
    needed = [n for n, flag in (("mask", mask), ("ema", teacher)) if flag]
    by_name = {u["name"]: u for u in utils}
    for name in by_name:
        if name not in needed:
            logger.warning("util '%s' is configured but no loss needs it; it is not built", name)
    return [by_name.get(n, {"name": n, "conf": {}}) for n in needed]


def read_token_list(token_list: str | list) -> list[str]:
    """Token list file (one token per line; hubert1's ``<sos/eos>\\n<unk>`` line is split)
    or an in-config list."""
    if isinstance(token_list, list):
        return [str(t) for t in token_list]
    from espnet2.data.kaldi import read_token_list as read_file

    return read_file(token_list)


def label_classes(tokens: list[str]) -> tuple[int, int]:
    """(K = number of non-special tokens, largest id of a non-special token + 1)."""
    ids = [i for i, t in enumerate(tokens) if not _SPECIAL_TOKEN.match(t)]
    return len(ids), (max(ids) + 1 if ids else 0)


def resolve_num_classes(conf: dict, tokens: list[str], where: str) -> int:
    """``num_classes`` for a label loss: default K; must cover every label id."""
    k, needed = label_classes(tokens)
    n = conf.get("num_classes", k)
    if n < needed:
        raise ConfigError(
            f"{where}.conf.num_classes={n} but the token list has label tokens up to id "
            f"{needed - 1} (K={k} non-special tokens): set num_classes to {k} (>= {needed})")
    if n != k:
        logger.warning("%s: num_classes=%d differs from the %d label tokens of the token list",
                       where, n, k)
    return n


class SSLTask(AbsTask):
    class_choices_list = [mix_choices, frontend_choices, specaug_choices, normalize_choices,
                          preencoder_choices, encoder_choices]
    filled_conf_keys = FILLED
    loss_choices = loss_choices
    util_choices = util_choices

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        g = parser.add_argument_group("task")
        g.add_argument("--token_list", type=_str_or_list, default=None,
                       help="token list (required only when a loss needs labels)")
        g.add_argument("--token_type", type=str, default="word",
                       choices=["word", "bpe", "char", "phn"])
        g.add_argument("--init", type=cfg.str_or_none, default=None,
                       choices=[None, "xavier_uniform", "xavier_normal", "kaiming_uniform",
                                "kaiming_normal", "bert"],
                       help="extra initialisation (none: modules' own; bert: N(0, 0.02) for "
                            "the encoder's linear layers, as fairseq)")
        g.add_argument("--input_size", type=int_or_none, default=None,
                       help="only none is supported (raw audio through the frontend)")
        g.add_argument("--num_classes", type=int_or_none, default=None,
                       help="ESPnet compatibility; set num_classes in the loss conf instead")
        g.add_argument("--collate_fn_conf", action=NestedDictAction, default={},
                       help="pad (false), rand_crop (true), label_downsampling (1)")
        g.add_argument("--use_preprocessor", type=str2bool, default=True)
        g.add_argument("--loss", action=YamlListAction, default=[{"name": "hubert", "conf": {}}],
                       help="YAML list of {name, conf, weight}; names: "
                       + ", ".join(loss_choices.choices()))
        g.add_argument("--util", action=YamlListAction, default=[],
                       help="YAML list of {name, conf}; names: "
                       + ", ".join(util_choices.choices()))
        for choices in cls.class_choices_list:
            choices.add_arguments(g)

    @classmethod
    def check_args(cls, args: argparse.Namespace) -> list[str]:
        problems = super().check_args(args)
        losses = _entries(args.loss, "loss", _LOSS_ENTRY_KEYS, loss_choices, problems)
        utils = _entries(args.util, "util", _UTIL_ENTRY_KEYS, util_choices, problems)
        if not args.loss:
            problems.append("loss: at least one loss is required, e.g. [{name: hubert}]")
        if args.input_size is not None:
            problems.append(f"input_size={args.input_size}: feature input without a frontend "
                            "is not supported; use input_size: none")
        valid = ["pad", "rand_crop", "label_downsampling", "crop_audio"]
        for k in sorted(set(args.collate_fn_conf) - {*valid, "int_pad_value"}):
            if k in ("window_size", "window_shift"):
                problems.append(f"collate_fn_conf.{k}: the crop/label geometry comes from the "
                                "frontend (frame_geometry()); remove this key")
            else:
                problems.append(f"collate_fn_conf: unknown key '{k}'{suggestion(k, valid)}; "
                                f"valid keys: {', '.join(valid)}")
        if len(problems) == 0:
            args.loss, args.util = losses, utils
            names = [e["name"] for e in losses]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                problems.append(f"loss: {sorted(dup)} listed twice")
        return problems

    @classmethod
    def resolve_config(cls, args: argparse.Namespace) -> dict:
        config = super().resolve_config(args)
        config["loss"] = [
            {"name": e["name"], "weight": e.get("weight", 1.0),
             "conf": cfg.merge_dict(constructor_defaults(loss_choices.get_class(e["name"]),
                                                         FILLED["loss"]), e["conf"])}
            for e in args.loss
        ]
        config["util"] = [
            {"name": u["name"],
             "conf": cfg.merge_dict(constructor_defaults(util_choices.get_class(u["name"]),
                                                         FILLED["util"]), u["conf"])}
            for u in required_utils(args.loss, args.util)
        ]
        return cfg._plain(config)

    @classmethod
    def frontend_fs(cls, args: argparse.Namespace) -> int:
        """Sampling rate from ``frontend_conf.fs`` (``16k`` accepted), default 16000."""
        return cfg.humanfriendly_int(args.frontend_conf.get("fs", 16000))

    @classmethod
    def build_model(cls, args: argparse.Namespace):
        """Wire [mix] -> frontend -> specaug -> normalize -> preencoder -> encoder, losses, utils"""
        from espnet2.ssl.espnet_model import ESPnetSSLModel

        frontend_conf = dict(args.frontend_conf)
        if "fs" in frontend_conf:
            frontend_conf["fs"] = cls.frontend_fs(args)
        frontend = _construct("frontend", args.frontend, frontend_choices.get_class(args.frontend),
                              frontend_conf)
        size = frontend.output_size()
        specaug = _build_optional("specaug", specaug_choices, args.specaug, args.specaug_conf)
        mixer = _build_optional("mix", mix_choices, args.mix, args.mix_conf)
        normalize = _build_optional("normalize", normalize_choices, args.normalize,
                                    args.normalize_conf)
        preencoder = None
        if args.preencoder is not None:
            conf = _filled(args.preencoder_conf, "input_size", size, "preencoder_conf")
            preencoder = _construct("preencoder", args.preencoder,
                                    preencoder_choices.get_class(args.preencoder), conf)
            size = preencoder.output_size()
        conf = _filled(args.encoder_conf, "input_size", size, "encoder_conf")
        encoder = _construct("encoder", args.encoder, encoder_choices.get_class(args.encoder), conf)
        losses, tokens = cls.build_losses(args, encoder.output_size())
        utils = {}
        for u in required_utils(args.loss, args.util):
            util_cls = util_choices.get_class(u["name"])
            if u["name"] == "mask":
                utils["mask"] = _construct("util", "mask", util_cls,
                                           {"encoder_embed_dim": size, **u["conf"]})
            else:
                utils["ema"] = _construct("util", u["name"], partial(util_cls, encoder), u["conf"])
        try:  # the model's own checks (e.g. a loss needing more blocks) are option problems
            model = ESPnetSSLModel(
                frontend=frontend, specaug=specaug, normalize=normalize, preencoder=preencoder,
                encoder=encoder, losses=losses, masker=utils.get("mask"), ema=utils.get("ema"),
                token_list=tokens, mixer=mixer,
            )
        except ValueError as e:
            raise ConfigError(f"{e}; fix the YAML or the command line") from e
        if args.init is not None:
            initialize(model, args.init)
        return model

    @classmethod
    def token_list_for_data(cls, args: argparse.Namespace) -> list[str] | None:
        labels, _, _ = loss_needs(args.loss)
        return read_token_list(args.token_list) if labels and args.token_list else None

    @classmethod
    def run_preflight(cls, args: argparse.Namespace) -> None:
        """Every data/option problem at once (see :mod:`espnet2.tasks.preflight`)."""
        from espnet2.data.errors import DataError
        from espnet2.tasks import preflight

        problems, tokens, num_classes = [], None, None
        labels, mask, _ = loss_needs(args.loss)
        if labels:
            if args.token_list is None:
                problems.append("a label loss needs --token_list (hubert1's tokens.txt)")
            else:
                try:
                    tokens = read_token_list(args.token_list)
                except (DataError, ConfigError) as e:
                    problems.append(str(e))
        if tokens is not None:
            for i, e in enumerate(args.loss):
                if loss_choices.get_class(e["name"]).needs.labels:
                    try:
                        num_classes = resolve_num_classes(e["conf"], tokens, f"loss[{i}]")
                    except ConfigError as err:
                        problems.append(str(err))
        conf = dict(args.frontend_conf)
        if "fs" in conf:
            conf["fs"] = cls.frontend_fs(args)
        frontend_cls = frontend_choices.get_class(args.frontend)
        geom = _construct("frontend", args.frontend, frontend_cls, conf).frame_geometry()
        if not problems:  # (token problems would be reported twice)
            problems += cls.model_problems(args)
        preflight.run(args, geom, cls.frontend_fs(args), tokens, num_classes, args.loss, labels,
                      required_utils(args.loss, args.util), mask, problems)

    @classmethod
    def build_model_on_meta(cls, args: argparse.Namespace):
        """The model of ``args`` with every tensor on the meta device (shapes only)."""
        import copy

        import torch

        probe = copy.copy(args)
        probe.init = None
        with torch.device("meta"):
            return cls.build_model(probe)

    @classmethod
    def model_problems(cls, args: argparse.Namespace) -> list[str]:
        """Build the whole model on the meta device (no memory, no initialisation: 0.02 s for
        HuBERT Base, 1.7 s on the CPU) so that every component's rejection of its options is
        reported by the preflight, before anything is written. ``--init`` is not loaded here."""
        try:
            cls.build_model_on_meta(args)
        except ConfigError as e:
            return [str(e)]
        except Exception as e:  # not an option problem; the real build will report it
            logger.debug("model check on the meta device skipped: %r", e)
        return []

    @classmethod
    def build_losses(cls, args: argparse.Namespace, encoder_size: int):
        """``[(name, loss, weight)]`` (``num_classes`` checked against the token list) and the
        token list (None when no loss needs labels)."""
        labels, _, _ = loss_needs(args.loss)
        tokens = None
        if labels:
            if args.token_list is None:
                need = [e["name"] for e in args.loss
                        if loss_choices.get_class(e["name"]).needs.labels]
                raise ConfigError(f"loss {need} needs frame labels: pass --token_list "
                                  "(e.g. hubert1's tokens.txt) and the text data stream")
            tokens = read_token_list(args.token_list)
        losses = []
        for i, e in enumerate(args.loss):
            loss_cls = loss_choices.get_class(e["name"])
            conf = dict(e["conf"])
            if loss_cls.needs.labels:
                conf["num_classes"] = resolve_num_classes(conf, tokens, f"loss[{i}]")
            loss = _construct(f"loss[{i}]", e["name"], loss_cls,
                              {"encoder_output_size": encoder_size, **conf})
            losses.append((e["name"], loss, float(e.get("weight", 1.0))))
        return losses, tokens


def _str_or_list(value: Any) -> str | list | None:
    if isinstance(value, list):
        return [str(v) for v in value]
    return cfg.str_or_none(value)


def _build_optional(slot: str, choices: ClassChoices, name: str | None, conf: dict):
    cls = choices.get_class(name)
    return None if cls is None else _construct(slot, name, cls, conf)


def _construct(slot: str, name: str, cls, conf: dict):
    """``cls(**conf)``; a constructor's rejection of its options becomes a :class:`ConfigError`
    naming the slot and the YAML section to fix (not a traceback from deep inside a worker)."""
    try:
        return cls(**conf)
    except (ValueError, TypeError, AssertionError) as e:
        section = f"{slot}_conf" if not slot.startswith(("loss", "util")) else \
            f"the conf of {slot.split('[')[0]} '{name}'"
        raise ConfigError(f"{slot} '{name}': {type(e).__name__}: {e} (fix {section} in the "
                          "YAML or on the command line)") from e


def _filled(conf: dict, key: str, value: int, where: str) -> dict:
    """``conf`` with ``key=value``; a user-given different value is an error."""
    if key in conf and conf[key] != value:
        raise ConfigError(f"{where}.{key}={conf[key]} but the previous module outputs {value}; "
                          f"remove {key} (it is wired automatically)")
    return {**conf, key: value}


def initialize(model, method: str) -> None:
    """Re-initialise the weights of linear, convolution and embedding layers; biases to zero.

    ``xavier_*`` / ``kaiming_*``: every such layer of the model. ``bert``: N(0, 0.02) for the
    encoder's linear and embedding layers only (fairseq ``init_bert_params``, which wav2vec 2.0,
    HuBERT and data2vec apply to their transformer; the convolutional positional embedding
    keeps its own initialisation). A weight-normalised layer keeps its magnitude ``g`` and
    gets a new direction ``v``. Norm layers, codebooks and buffers are untouched.
    """
    import torch
    from torch.nn.utils import parametrize

    fn = {"xavier_uniform": torch.nn.init.xavier_uniform_,
          "xavier_normal": torch.nn.init.xavier_normal_,
          "kaiming_uniform": lambda w: torch.nn.init.kaiming_uniform_(w, nonlinearity="relu"),
          "kaiming_normal": lambda w: torch.nn.init.kaiming_normal_(w, nonlinearity="relu"),
          "bert": lambda w: torch.nn.init.normal_(w, mean=0.0, std=0.02)}[method]
    if method == "bert":
        root, layers = model.encoder, (torch.nn.Linear, torch.nn.Embedding)
    else:
        root, layers = model, (torch.nn.Linear, torch.nn.Embedding, torch.nn.Conv1d,
                               torch.nn.Conv2d)
    with torch.no_grad():
        for module in root.modules():
            if not isinstance(module, layers):
                continue
            if parametrize.is_parametrized(module, "weight"):
                fn(module.parametrizations.weight.original1)  # direction; g is kept
            else:
                fn(module.weight)
            if getattr(module, "bias", None) is not None:
                module.bias.zero_()
