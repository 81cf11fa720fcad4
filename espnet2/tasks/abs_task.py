"""The task skeleton: ESPnet's CLI (``--config``, ``--print_config``, ...), config checking, and
``main`` (launch -> build -> train). A concrete task (``SSLTask``) adds its registries, its task
options and ``build_model``.

Config semantics (ESPnet's): ``--config file.yaml`` sets the defaults, the CLI overrides them;
``--<slot>_conf k=v`` merges into the YAML mapping. Unlike ESPnet, YAML values are type-checked
with the same converters as the CLI, unknown keys fail with a suggestion, and every problem is
reported at once. ``--print_config`` prints the fully resolved config (every option, plus the
constructor defaults of the chosen classes); it reloads with ``--config`` to the same namespace.
The same resolved config is written to ``<output_dir>/config.yaml``.

Deliberate differences from ESPnet: default ``optim`` is ``adam`` (ESPnet: adadelta) and
default ``batch_type`` is ``numel`` (ESPnet: folded, which is not implemented; ``fold_length`` is
accepted and unused); ``train_dtype`` other than float32 is refused (use ``use_amp``); ESPnet keys
that change nothing here (``num_att_plot``, ``sort_in_batch`` ...) are accepted with a warning
when set to a non-default value (:data:`ESPNET_NOOP_KEYS`); an output dir holding a different
``config.yaml`` is refused unless ``--resume true``.

DeepSpeed: ``use_deepspeed: true`` does not fail. There is no DeepSpeed here; training goes on
torch-native (DDP + bf16 autocast when ``use_amp`` or a bf16 DeepSpeed json asks for it) with a
warning that names the equivalent options (see :func:`deepspeed_fallback`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from espnet2.tasks.data import MultiSplitLoader, speech_lengths
from espnet2.tasks.launch import (
    check_devices,
    close_log_file,
    export_dist_env,
    launch,
    launcher_rank,
    log_error_to_file,
    setup_logging,
)
from espnet2.train.class_choices import ClassChoices, check_conf_keys, constructor_defaults
from espnet2.train.init_param import freeze_parameters, load_init_param
from espnet2.utils import config as cfg
from espnet2.utils.config import (
    ConfigError,
    NestedDictAction,
    TaskArgumentParser,
    coerce_value,
    int_or_none,
    str2bool,
    str2triple,
    str_or_none,
    strict_float,
    strict_int,
    suggestion,
)
from espnet2.utils.cpu_malloc import tune_cpu_malloc

logger = logging.getLogger(__name__)

#: ESPnet options accepted in YAML/CLI for compatibility that change nothing here (no-op value).
ESPNET_NOOP_KEYS: dict[str, Any] = {
    "num_att_plot": 0, "dry_run": False, "iterator_type": "sequence", "valid_iterator_type": None,
    "write_collected_feats": False, "cudnn_enabled": True, "cudnn_benchmark": False,
    "cudnn_deterministic": True, "use_wandb": False, "wandb_project": None, "wandb_id": None,
    "wandb_entity": None, "wandb_name": None, "wandb_model_log_interval": -1,
    "detect_anomaly": False, "pretrain_path": None, "sort_in_batch": "descending",
    "sort_batch": "descending", "max_cache_size": 0.0, "max_cache_fd": 32,
    "allow_variable_data_keys": False, "allow_multi_rates": False, "valid_max_cache_size": None,
    "bpemodel": None, "non_linguistic_symbols": None, "cleaner": None, "g2p": None,
    "speech_volume_normalize": None, "rir_scp": None, "rir_apply_prob": 1.0, "noise_scp": None,
    "noise_apply_prob": 1.0, "noise_db_range": "13_15", "short_noise_thres": 0.5,
    "window_size": None, "window_shift": None, "sharded_ddp": False, "use_tf32": False,
    "grad_noise": False, "create_graph_in_tensorboard": False,
    "chunk_length": 500, "chunk_shift_ratio": 0.5, "num_cache_chunks": 1024,
    "exclude_weight_decay": False, "exclude_weight_decay_conf": {}, "use_adapter": False,
    "adapter": "lora", "save_strategy": "all", "adapter_conf": {}, "version": None,
    "distributed": None, "required": None, "config": None, "print_config": False,
    "model": "espnet", "ignore_init_mismatch": False, "valid_batch_type": None,
    "model_conf": {},
}

#: Keys that may differ between a run and its restart without counting as "a different config".
VOLATILE_KEYS = {
    "resume", "ngpu", "num_workers", "num_threads", "log_level", "dist_backend",
    "dist_init_method", "dist_world_size", "dist_rank", "local_rank", "dist_master_addr",
    "dist_master_port", "dist_launcher", "multiprocessing_distributed", "output_dir",
    "log_interval", "use_tensorboard", "use_matplotlib",
}

class AbsTask(ABC):
    """Subclasses set ``class_choices_list`` and implement the abstract class methods."""

    class_choices_list: list[ClassChoices] = []
    #: per registry name: constructor arguments ``build_model`` fills in (hidden in print_config)
    filled_conf_keys: dict[str, set[str]] = {}

    # ------------------------------------------------------------------ parser
    @classmethod
    @abstractmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """Task-specific options and registries."""

    @classmethod
    @abstractmethod
    def build_model(cls, args: argparse.Namespace):
        """Build the model from a checked namespace (modules never see ``args``)."""

    @classmethod
    def get_parser(cls) -> argparse.ArgumentParser:
        p = TaskArgumentParser(
            description=f"{cls.__name__}: train or collect stats", allow_abbrev=False,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        g = p.add_argument_group("common")
        g.add_argument("--config", type=str_or_none, default=None, help="YAML config (CLI wins)")
        g.add_argument("--print_config", action="store_true", help="print the resolved config")
        g.add_argument("--output_dir", type=str_or_none, default=None)
        g.add_argument("--ngpu", type=strict_int, default=0, help="GPUs per node (0: CPU)")
        g.add_argument("--seed", type=strict_int, default=0)
        g.add_argument("--num_workers", type=strict_int, default=1, help="DataLoader workers")
        g.add_argument("--num_threads", type=int_or_none, default=None,
                       help="intra-op threads per process (none: chosen automatically)")
        g.add_argument("--log_level", type=str, default="INFO",
                       choices=["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"])
        cls._add_distributed_arguments(p)
        cls._add_trainer_arguments(p)
        cls._add_data_arguments(p)
        cls.add_task_arguments(p)
        return p

    @classmethod
    def _add_distributed_arguments(cls, p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("distributed")
        g.add_argument("--dist_backend", type=str, default="auto",
                       help="auto (nccl on GPU, gloo on CPU) | nccl | gloo")
        g.add_argument("--dist_init_method", type=str, default="env://")
        g.add_argument("--dist_world_size", type=int_or_none, default=None)
        g.add_argument("--dist_rank", type=int_or_none, default=None)
        g.add_argument("--local_rank", type=int_or_none, default=None)
        g.add_argument("--dist_master_addr", type=str_or_none, default=None)
        g.add_argument("--dist_master_port", type=int_or_none, default=None)
        g.add_argument("--dist_launcher", type=str_or_none, default=None,
                       choices=[None, "slurm", "mpi", "torchrun"])
        g.add_argument("--multiprocessing_distributed", type=str2bool, default=True,
                       help="--ngpu N>1 on one node: spawn one process per GPU")
        g.add_argument("--unused_parameters", type=str2bool, default=False,
                       help="DDP find_unused_parameters")
        g.add_argument("--use_deepspeed", type=str2bool, default=False,
                       help="accepted; runs torch-native (DDP + bf16 AMP) with a warning")
        g.add_argument("--deepspeed_config", type=str_or_none, default=None)

    @classmethod
    def _add_trainer_arguments(cls, p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("trainer")
        g.add_argument("--collect_stats", type=str2bool, default=False,
                       help="write shape files (and feats stats) instead of training")
        g.add_argument("--max_epoch", type=strict_int, default=40)
        g.add_argument("--patience", type=int_or_none, default=None)
        g.add_argument("--val_scheduler_criterion", type=str, nargs=2, default=["valid", "loss"])
        g.add_argument("--early_stopping_criterion", type=str, nargs=3,
                       default=["valid", "loss", "min"])
        g.add_argument("--best_model_criterion", type=str2triple, nargs="+",
                       default=[["train", "loss", "min"], ["valid", "loss", "min"],
                                ["train", "acc", "max"], ["valid", "acc", "max"]])
        g.add_argument("--keep_nbest_models", type=strict_int, nargs="+", default=[10])
        g.add_argument("--nbest_averaging_interval", type=strict_int, default=0)
        g.add_argument("--grad_clip", type=strict_float, default=5.0)
        g.add_argument("--grad_clip_type", type=strict_float, default=2.0)
        g.add_argument("--accum_grad", type=strict_int, default=1)
        g.add_argument("--resume", type=str2bool, default=False)
        g.add_argument("--train_dtype", type=str, default="float32",
                       choices=["float16", "float32", "float64", "bfloat16"])
        g.add_argument("--use_amp", type=str2bool, default=False,
                       help="autocast (bf16 if possible)")
        g.add_argument("--log_interval", type=int_or_none, default=None)
        g.add_argument("--use_matplotlib", type=str2bool, default=True)
        g.add_argument("--use_tensorboard", type=str2bool, default=True)
        g.add_argument("--init_param", type=str, nargs="*", default=[],
                       help="path:src_key:dst_key:exclude_keys (ESPnet syntax)")
        g.add_argument("--freeze_param", type=str, nargs="*", default=[],
                       help="parameter name prefixes to freeze")
        g.add_argument("--num_iters_per_epoch", type=int_or_none, default=None)
        g.add_argument("--max_steps", type=int_or_none, default=None,
                       help="stop after this many updates (fairseq max_update)")
        g.add_argument("--save_every_n_steps", type=int_or_none, default=None,
                       help="also write checkpoint.pth every this many updates")
        g.add_argument("--max_consecutive_skips", type=strict_int, default=20,
                       help="stop (with a checkpoint) after this many skipped updates in a row "
                       "(non-finite loss or gradient on any rank)")
        g.add_argument("--amp_dtype", type=str, default="bfloat16", choices=["bfloat16", "float16"])
        g.add_argument("--no_forward_run", type=str2bool, default=False,
                       help="iterate the data only (checks data, measures loader speed)")
        g.add_argument("--optim", type=str, default="adam", help="adam | adamw | sgd")
        g.add_argument("--optim_conf", action=NestedDictAction, default={})
        g.add_argument("--scheduler", type=str_or_none, default=None)
        g.add_argument("--scheduler_conf", action=NestedDictAction, default={})

    @classmethod
    def _add_data_arguments(cls, p: argparse.ArgumentParser) -> None:
        g = p.add_argument_group("data")
        g.add_argument("--train_data_path_and_name_and_type", type=str2triple, action="append",
                       default=[], help="path,name,type (types: sound, kaldi_ark)")
        g.add_argument("--valid_data_path_and_name_and_type", type=str2triple, action="append",
                       default=[])
        g.add_argument("--train_shape_file", type=str, action="append", default=[])
        g.add_argument("--valid_shape_file", type=str, action="append", default=[])
        g.add_argument("--batch_type", type=str, default="numel",
                       choices=["unsorted", "sorted", "length", "numel"],
                       help="numel: batch_bins = padded samples per global step (ESPnet's "
                       "folded batching is not supported: use numel or sorted)")
        g.add_argument("--batch_size", type=strict_int, default=20)
        g.add_argument("--valid_batch_size", type=int_or_none, default=None)
        g.add_argument("--batch_bins", type=cfg.humanfriendly_int, default=1000000)
        g.add_argument("--valid_batch_bins", type=int_or_none, default=None)
        g.add_argument("--fold_length", type=strict_int, action="append", default=[],
                       help="accepted for ESPnet compatibility; unused (no folded batching)")
        g.add_argument("--multiple_iterator", type=str2bool, default=False,
                       help="data/shape paths are split dirs; one split is loaded at a time")

    # ------------------------------------------------------------------ parsing
    @classmethod
    def parse_args(cls, cmd: list[str] | None = None) -> argparse.Namespace:
        """Parse CLI + YAML; raises :class:`ConfigError` listing every problem."""
        cmd = list(sys.argv[1:] if cmd is None else cmd)
        parser = cls.get_parser()
        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--config", type=str_or_none, default=None)
        known, _ = pre.parse_known_args(cmd)
        problems: list[str] = []
        if known.config is not None:
            data = cfg.load_yaml(known.config)
            # good keys become defaults; bad ones are reported with the CLI checks below
            parser.set_defaults(**cls._yaml_defaults(parser, data, known.config, problems))
        args = parser.parse_args(cmd)
        problems += cls.check_args(args)
        if problems:
            raise ConfigError(f"{len(problems)} config problem(s):\n  - " + "\n  - ".join(problems))
        return args

    @classmethod
    def _yaml_defaults(cls, parser, data: dict, src: str, problems: list[str]) -> dict:
        actions = {a.dest: a for a in parser._actions if a.dest != "help"}
        out = {}
        for key, value in data.items():
            if key in ("config", "print_config"):
                continue
            if key not in actions:
                if key in ESPNET_NOOP_KEYS:
                    if value != ESPNET_NOOP_KEYS[key]:
                        logger.warning("%s: '%s: %r' is accepted for ESPnet compatibility but "
                                       "has no effect here", src, key, value)
                    continue
                problems.append(f"{src}: unknown key '{key}'{suggestion(key, actions)}")
                continue
            try:
                out[key] = coerce_value(actions[key], value)
            except (ValueError, TypeError, argparse.ArgumentTypeError) as e:
                problems.append(f"{src}: {key}: {value!r}: {e}")
        return out

    @classmethod
    def check_args(cls, args: argparse.Namespace) -> list[str]:
        """Post-parse checks (registry conf keys, option conflicts). Returns problems."""
        problems = []
        for choices in cls.class_choices_list:
            name = getattr(args, choices.name)
            conf = getattr(args, f"{choices.name}_conf")
            if name is None:
                if not choices.optional:
                    problems.append(f"--{choices.name} is required: choose one of "
                                    f"{', '.join(choices.choices())}")
                continue
            c = choices.get_class(name)
            problems += check_conf_keys(c, conf, f"{choices.name}_conf ({name})",
                                        cls.filled_conf_keys.get(choices.name, set()))
        problems += _check_optim(args)
        if args.train_dtype != "float32":
            problems.append(f"train_dtype={args.train_dtype}: parameters stay float32 here; "
                            "use use_amp: true with amp_dtype: bfloat16 (or float16)")
        if args.dist_launcher == "mpi":
            problems.append("dist_launcher=mpi is not supported: launch with torchrun, srun "
                            "(--dist_launcher slurm) or --ngpu N on one node")
        if args.accum_grad < 1:
            problems.append(f"accum_grad must be >= 1, got {args.accum_grad}")
        if args.multiple_iterator and args.collect_stats:
            problems.append("multiple_iterator cannot be used with collect_stats; "
                            "collect stats on the unsplit data, then split_scps")
        return problems

    # ------------------------------------------------------------------ resolved config
    @classmethod
    def resolve_config(cls, args: argparse.Namespace) -> dict:
        """Every option plus the chosen classes' constructor defaults in ``<slot>_conf``."""
        config = {k: v for k, v in vars(args).items() if k not in ("config", "print_config")}
        for choices in cls.class_choices_list:
            name = config[choices.name]
            if name is None:
                continue
            skip = cls.filled_conf_keys.get(choices.name, set())
            defaults = constructor_defaults(choices.get_class(name), skip)
            key = f"{choices.name}_conf"
            config[key] = cfg.merge_dict(defaults, config[key])
        return cfg._plain(config)

    @classmethod
    def prepare_output_dir(cls, args: argparse.Namespace, write: bool = True) -> dict:
        """Write ``config.yaml``; refuse to overwrite a different one unless ``--resume``.

        ``write=False`` only checks (``main`` checks, runs the preflight, then writes, so a
        refused run leaves the output dir untouched)."""
        if args.output_dir is None:
            raise ConfigError("--output_dir is required (where config.yaml, logs and "
                              "checkpoints go)")
        out = Path(args.output_dir)
        config = cls.resolve_config(args)
        path = out / "config.yaml"
        if path.exists():
            old = cfg.load_yaml(path)
            if set(config) - set(old):  # written before an option existed: it had the default
                old = {**cls.resolve_config(cls.parse_args([])), **old}
            diff = sorted(k for k in set(old) | set(config) if k not in VOLATILE_KEYS
                          and old.get(k) != config.get(k))
            if diff and not args.resume and not args.collect_stats:  # stats dirs are rebuilt
                shown = "; ".join(f"{k}: {old.get(k)!r} -> {config.get(k)!r}" for k in diff[:8])
                raise ConfigError(
                    f"{path} holds a different config ({len(diff)} key(s) differ: {shown}). "
                    "Nothing was overwritten. Use a new --output_dir, or pass --resume true to "
                    "continue that experiment with the new options.")
            if diff:
                logger.warning("%s changes; differing keys: %s", path, diff)
        if write and launcher_rank() == 0:  # other torchrun/srun ranks only check
            from espnet2.utils.fileio import remove_stale_temp_files

            if out.is_dir():  # half-written files of a killed run (never read, maybe GBs)
                for stale in remove_stale_temp_files(out):
                    logger.warning("removed %s, left by a killed write", stale)
            cfg.dump_yaml(config, path)
        return config

    # ------------------------------------------------------------------ main
    @classmethod
    def main(cls, cmd: list[str] | None = None) -> None:
        """Parse, then print the config, collect stats, or train (spawning workers if asked)."""
        from espnet2.train.threads import mark_start

        mark_start()  # other processes' CPU use is measured over our start-up (thread choice)
        try:
            args = cls.parse_args(cmd)
        except ConfigError as e:
            sys.stderr.write(f"error: {e}\n")
            raise SystemExit(2) from None
        if args.print_config:
            sys.stdout.write(cfg.dump_yaml_str(cls.resolve_config(args)))
            return
        from espnet2.data.errors import DataError
        from espnet2.tasks.preflight import PreflightError
        from espnet2.train.trainer import TrainingDiverged

        close_log_file()  # a previous main() in this process must not receive this run's log
        try:
            deepspeed_fallback(args)
            check_devices(args)
            cls.prepare_output_dir(args, write=False)
            if not args.collect_stats:
                cls.run_preflight(args)  # before anything is written to output_dir
            cls.prepare_output_dir(args)
            launch(cls, args)
        except (ConfigError, DataError, PreflightError, TrainingDiverged) as e:
            log_error_to_file(e)  # also keep it in train.log
            sys.stderr.write(f"error: {e}\n")
            raise SystemExit(1 if isinstance(e, TrainingDiverged) else 2) from None

    # ------------------------------------------------------------------ run (one process)
    @classmethod
    def run_worker(cls, args: argparse.Namespace) -> None:
        """One training (or stats) process: join the group, log, preflight, build, train."""
        from espnet2.train.checkpoint import seed_everything
        from espnet2.train.distributed import init_distributed
        from espnet2.train.threads import set_num_threads

        export_dist_env(args)
        dist = init_distributed(min(args.ngpu, 1), args.dist_backend)
        setup_logging(args, dist.rank)
        logger.info("process rank %d of world size %d (local rank %d) on %s", dist.rank,
                    dist.world_size, dist.local_rank, dist.device)
        set_num_threads(args.num_threads, dist.local_world_size)
        if dist.device.type == "cpu":
            tune_cpu_malloc()  # keep big activations' pages between steps (~x0.8 step time)
        seed_everything(args.seed)
        try:
            if args.collect_stats:
                from espnet2.train.collect_stats import collect_stats

                collect_stats(cls, args, dist)
                return
            cls.train(args, dist)
        except BaseException as e:
            # Free the trainer (DDP reducer, loader workers) while the process group exists:
            # the traceback keeps it alive, and its gloo/NCCL handles released only after
            # destroy_process_group() can block the exit of a failed rank.
            import gc
            import traceback

            traceback.clear_frames(e.__traceback__)
            gc.collect()
            raise
        finally:
            from espnet2.train.distributed import destroy

            destroy()

    @classmethod
    def run_preflight(cls, args: argparse.Namespace) -> None:
        """Data/config checks before the first step (override to add the task's checks)."""
        logger.debug("%s has no task-specific preflight checks", cls.__name__)

    @classmethod
    def build_loaders(cls, args: argparse.Namespace, model, dist):
        """(train_loader, valid_loader) implementing ``espnet2.train.options.BatchLoader``.

        The collate crops training batches to their shortest utterance (``collate_fn_conf``:
        ``pad`` false, ``rand_crop`` true); validation batches are padded and never cropped.
        With ``--multiple_iterator`` the training data is read one split at a time.
        """
        from espnet2.tasks.preflight import split_paths
        from espnet2.train.collect_stats import data_streams

        geom = model.frontend.frame_geometry()
        loaders = []
        for phase in ("train", "valid"):
            triples = getattr(args, f"{phase}_data_path_and_name_and_type")
            if not triples:
                loaders.append(None)
                continue
            multi = args.multiple_iterator and phase == "train"
            streams = {n: split_paths(p, multi) for n, p in data_streams(triples, phase).items()}
            shapes = [split_paths(s, multi) for s in getattr(args, f"{phase}_shape_file")]

            def make(i: int, phase=phase, streams=streams, shapes=shapes):
                return cls.build_split_loader(args, phase, {n: v[i] for n, v in streams.items()},
                                              shapes[0][i] if shapes else None, geom, dist)

            n = len(streams["speech"])
            loaders.append(make(0) if n == 1 else MultiSplitLoader(make, n, args.seed))
        return loaders[0], loaders[1]

    @classmethod
    def build_split_loader(cls, args: argparse.Namespace, phase: str, streams: dict[str, str],
                           shape_file: str | None, geom, dist):
        """One :class:`EpochLoader` over one data dir (or one split of it)."""
        from espnet2.data.collate import SSLCollate
        from espnet2.data.dataset import SSLDataset
        from espnet2.data.loader import EpochLoader
        from espnet2.data.samplers import build_batches

        train = phase == "train"
        tokens = cls.token_list_for_data(args)
        dataset = SSLDataset(streams["speech"], text=streams.get("text") if tokens else None,
                             token_list=tokens, fs=cls.frontend_fs(args))
        lengths = speech_lengths(dataset, shape_file)
        size = args.batch_size if train else (args.valid_batch_size or args.batch_size)
        bins = args.batch_bins if train else (args.valid_batch_bins or args.batch_bins)
        batches = build_batches(args.batch_type, lengths, batch_size=size, batch_bins=bins,
                                min_batch_size=dist.world_size)
        conf = args.collate_fn_conf
        pad = bool(conf.get("pad", False)) or not bool(conf.get("crop_audio", True))
        collate = SSLCollate(geom, pad=pad if train else True,
                             rand_crop=bool(conf.get("rand_crop", True)) and train,
                             label_downsampling=int(conf.get("label_downsampling", 1)),
                             crop_seed=args.seed)
        return EpochLoader(dataset, batches, collate, seed=args.seed,
                           num_workers=args.num_workers, rank=dist.rank,
                           world_size=dist.world_size, shuffle=train,
                           pin_memory=dist.device.type == "cuda")

    @classmethod
    def token_list_for_data(cls, args: argparse.Namespace) -> list[str] | None:
        """Token list the dataset maps labels with (None: labels are not loaded)."""
        return None

    @classmethod
    def frontend_fs(cls, args: argparse.Namespace) -> int | None:
        """Sampling rate the data must have (None: any)."""
        return None

    @classmethod
    def train(cls, args: argparse.Namespace, dist) -> None:
        from espnet2.train.optim import build_optimizer, param_groups
        from espnet2.train.schedulers import build_scheduler, schedule_horizon
        from espnet2.train.trainer import Trainer

        model = cls.build_model(args)  # main() ran the preflight before writing anything
        for spec in args.init_param:
            load_init_param(model, spec)
        freeze_parameters(model, args.freeze_param)
        model.to(dist.device)
        train_loader, valid_loader = cls.build_loaders(args, model, dist)
        optimizer = build_optimizer(args.optim, param_groups(model.named_parameters()),
                                    args.optim_conf)
        per_epoch = args.num_iters_per_epoch or train_loader.num_batches(1)
        horizon = schedule_horizon(args.max_steps, args.max_epoch, per_epoch, args.accum_grad)
        scheduler = build_scheduler(args.scheduler, optimizer, args.scheduler_conf,
                                    max_steps=horizon)
        options = cls.trainer_options(args)
        Trainer(model, optimizer, scheduler, train_loader, valid_loader, options, dist).run()

    @classmethod
    def trainer_options(cls, args: argparse.Namespace):
        from espnet2.train.options import TrainerOptions

        return TrainerOptions(
            output_dir=Path(args.output_dir), max_epoch=args.max_epoch, max_steps=args.max_steps,
            num_iters_per_epoch=args.num_iters_per_epoch, accum_grad=args.accum_grad,
            grad_clip=args.grad_clip, grad_clip_type=args.grad_clip_type, use_amp=args.use_amp,
            amp_dtype=args.amp_dtype, log_interval=args.log_interval,
            keep_nbest_models=args.keep_nbest_models,
            nbest_averaging_interval=args.nbest_averaging_interval,
            best_model_criterion=args.best_model_criterion, patience=args.patience,
            early_stopping_criterion=args.early_stopping_criterion,
            save_every_n_steps=args.save_every_n_steps, seed=args.seed, resume=args.resume,
            max_consecutive_skips=args.max_consecutive_skips,
            use_tensorboard=args.use_tensorboard, use_matplotlib=args.use_matplotlib,
            no_forward_run=args.no_forward_run,
            unused_parameters=args.unused_parameters or cls.has_skipped_parameters(args),
            fs=cls.frontend_fs(args) or 16000,
            **cls.extra_trainer_options(args),
        )

    @classmethod
    def has_skipped_parameters(cls, args: argparse.Namespace) -> bool:
        """True when some parameters may get no gradient in a step (layer drop): DDP then
        needs ``find_unused_parameters``, which costs a graph traversal, so it is not default."""
        confs = [v for k, v in vars(args).items() if k.endswith("_conf") and isinstance(v, dict)]
        return any(
            float(c.get(key) or 0) > 0
            for c in confs
            for key in ("layer_drop_rate", "stochastic_depth_rate")
        )

    @classmethod
    def extra_trainer_options(cls, args: argparse.Namespace) -> dict:
        return {}


def _check_optim(args: argparse.Namespace) -> list[str]:
    """``optim``/``scheduler`` names and their conf keys (checked before any model is built)."""
    from espnet2.train.optim import OPTIMIZERS
    from espnet2.train.schedulers import SCHEDULERS

    problems = []
    if args.optim.lower() not in OPTIMIZERS:
        problems.append(f"optim: {args.optim!r} is not supported; choices: "
                        f"{', '.join(OPTIMIZERS)}{suggestion(args.optim.lower(), OPTIMIZERS)}")
    else:
        problems += check_conf_keys(OPTIMIZERS[args.optim.lower()], args.optim_conf,
                                    f"optim_conf ({args.optim})", {"params"})
    if args.scheduler is not None and args.scheduler.lower() != "none":
        key = args.scheduler.lower()
        if key not in SCHEDULERS:
            problems.append(f"scheduler: {args.scheduler!r} is not supported; choices: "
                            f"{', '.join(SCHEDULERS)}, none{suggestion(key, SCHEDULERS)}")
        else:
            problems += check_conf_keys(SCHEDULERS[key], args.scheduler_conf,
                                        f"scheduler_conf ({args.scheduler})", {"optimizer"})
    return problems


def deepspeed_fallback(args: argparse.Namespace) -> None:
    """``use_deepspeed: true`` -> run torch-native with a warning naming the equivalents.

    A bf16 DeepSpeed json turns on ``use_amp`` (bf16 autocast); its gradient clipping and
    accumulation are copied when the YAML did not set them. ZeRO sharding is not reproduced
    (DDP keeps a full optimizer state per GPU): for memory, lower ``batch_bins`` and raise
    ``accum_grad``, or enable activation checkpointing in the encoder/frontend conf.
    """
    if not args.use_deepspeed:
        return
    import json

    ds: dict = {}
    if args.deepspeed_config and Path(args.deepspeed_config).is_file():
        try:
            ds = json.loads(Path(args.deepspeed_config).read_text())
        except json.JSONDecodeError as e:
            raise ConfigError(f"{args.deepspeed_config}: invalid JSON: {e}") from e
    if (ds.get("bf16") or {}).get("enabled") or (ds.get("fp16") or {}).get("enabled"):
        args.use_amp = True
    if "gradient_clipping" in ds:
        args.grad_clip = float(ds["gradient_clipping"])
    logger.warning(
        "use_deepspeed: true -> DeepSpeed is not used by this toolkit; training runs "
        "torch-native instead: DDP (--ngpu/torchrun/Slurm) + bf16 autocast (use_amp: %s) + "
        "activation checkpointing (encoder/frontend conf). The DeepSpeed json's optimizer and "
        "scheduler are NOT read: set optim/optim_conf and scheduler/scheduler_conf in the YAML "
        "(current: optim=%s, scheduler=%s). Set use_deepspeed: false to silence this.",
        args.use_amp, args.optim, args.scheduler)
    args.use_deepspeed = False
