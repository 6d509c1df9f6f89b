"""The ``s2d`` command: one verb per stage, Hydra overrides after it.

    s2d run                          the whole pipeline on the embedded demo data
    s2d run experiment=davis2016     ... on the DAVIS clips
    s2d eval eval.predictions=p.json data=davis data.root=/data/DAVIS
    s2d run -m data.demo.seed=0,1    a sweep (Hydra multirun)
"""
from __future__ import annotations

import errno
import logging
import os
import sys
from pathlib import Path
from typing import Callable

CONF_DIR = Path(__file__).resolve().parent.parent / "conf"

VERBS: dict[str, tuple[str, str]] = {
    # verb: (module[:function], one-line help); the function takes (cfg, run_dir), run by default
    "run": ("s2d.stages.pipeline", "every stage in order (masks ... final), skipping finished ones; a report"),
    "data": ("s2d.stages.data", "open (or generate) the data set and list its videos"),
    "masks": ("s2d.stages.chain:run_masks", "single-frame unsupervised masks on every frame (from motion, MaskCut, or imported)"),
    "keymasks": ("s2d.stages.chain:run_keymasks", "keymask discovery: the sparse labelset, baseline, overlays"),
    "distill": ("s2d.stages.chain:run_distill", "sparse-to-dense distillation: student + EMA teacher, Temporal DropLoss"),
    "final": ("s2d.stages.pipeline", "dense labelset from the teacher, then the final model (runs earlier stages)"),
    "demo": ("s2d.stages.demo", "draw the final model's instances on a video: s2d demo VIDEO.mp4"),
    "table": ("s2d.stages.table", "one row per finished run of a sweep (markdown), unfinished runs listed"),
    "eval": ("s2d.stages.evaluate", "score a YouTube-VIS predictions json: video AP/AR and DAVIS J&F"),
    "predict": ("s2d.stages.predict", "a model (model.pretrained=...) on a data set -> YouTube-VIS results json"),
}

# verbs whose results in the run folder belong to one data set (see stages.common.claim_run_folder)
CLAIMING = ("run", "masks", "keymasks", "distill", "final", "predict")

log = logging.getLogger("s2d")


def usage() -> str:
    lines = ["usage: s2d VERB [hydra overrides ...]", "", "verbs:"]
    lines += [f"  {v:<10} {h}" for v, (_, h) in VERBS.items()]
    lines += ["", "examples:", "  s2d run", "  s2d run experiment=davis2016",
              "  s2d data data=mp4 data.root=../shared/data/demo_videos",
              "  s2d run --cfg job          # print the resolved config and exit"]
    return "\n".join(lines)


def _did_you_mean(verb: str) -> str:
    """' (did you mean 'run'?)' for a misspelt verb, '' when no verb is close; an override given first
    (`s2d data.root=x`) is told that the verb comes first."""
    import difflib

    if "=" in verb:
        return " (the verb comes first: s2d VERB key=value ...)"
    close = difflib.get_close_matches(verb.lower(), list(VERBS), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _dispatch(cfg) -> None:
    import importlib

    from hydra.core.hydra_config import HydraConfig

    from s2d.config import validate_config
    from s2d.errors import S2DError

    claimed = False
    try:
        validate_config(cfg)
        run_dir = Path(HydraConfig.get().runtime.output_dir)
        if cfg.stage in CLAIMING:
            from s2d.stages.common import claim_run_folder

            claimed = claim_run_folder(cfg, run_dir)
        target, _, func = VERBS[cfg.stage][0].partition(":")  # module[:function], run() by default
        getattr(importlib.import_module(target), func or "run")(cfg, run_dir)
    except (S2DError, OSError) as e:
        if claimed:
            from s2d.stages.common import release_run_folder

            release_run_folder(run_dir)
        if os.environ.get("S2D_DEBUG"):
            raise
        msg = str(e) if isinstance(e, S2DError) else _os_error(e)
        _to_log_files(f"s2d {cfg.stage}: error: {msg}")
        print(f"s2d {cfg.stage}: error: {msg}\n(S2D_DEBUG=1 shows the full traceback)", file=sys.stderr)
        sys.exit(1)


def _unwritable_output(overrides: list[str]) -> str | None:
    """Hydra creates the run folder before any s2d code runs, and a failure there is a traceback: check first
    that the output root (``paths.output_root``, default ./outputs) can be created and written."""
    import tempfile

    roots = [a.split("=", 1)[1] for a in overrides if a.startswith("paths.output_root=")]
    root = Path(roots[-1] if roots else "outputs")
    try:
        root.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=root, prefix=".write-check-"):
            pass
    except OSError as e:
        return f"the output folder cannot be written: {_os_error(e)}"
    return None


def _os_error(e: OSError) -> str:
    """A failed read or write as one line: what, where, and what to do about the common causes."""
    where = f" {e.filename}" if e.filename else ""
    hint = {errno.ENOSPC: "free space or point paths.output_root=... at a larger disk; a rerun resumes",
            errno.EDQUOT: "free space or point paths.output_root=... elsewhere; a rerun resumes",
            errno.EACCES: "choose a folder you can write, e.g. paths.output_root=$HOME/s2d-outputs",
            errno.EROFS: "choose a writable folder, e.g. paths.output_root=$HOME/s2d-outputs",
            errno.ENOTDIR: "a file stands where a folder should be; choose another paths.output_root=..."}.get(e.errno, "")
    return f"{e.strerror or e}{':' if where else ''}{where}" + (f" ({hint})" if hint else "")


def quote_value(arg: str) -> str:
    """``key=value`` whose value holds an ``=`` (a path into a sweep's folder, e.g. ``.../name=x,seed=0/...``) ->
    the value in quotes. Hydra's grammar reads an unquoted ``=`` in a value as an error that names neither the key
    nor the fix, and no unquoted value may hold one, so quoting it changes no valid override."""
    if arg.startswith("-") or "=" not in arg:
        return arg
    key, value = arg.split("=", 1)
    if "=" not in value or value[:1] in ("'", '"') or not key or any(c in key for c in " [{"):
        return arg
    quote = "'" if "'" not in value else '"'
    return arg if quote in value else f"{key}={quote}{value}{quote}"


def _to_log_files(msg: str) -> None:
    """The error goes to the run's log file too, but not to the console a second time."""
    root = logging.getLogger()
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, msg, (), None)
    for h in root.handlers:
        if isinstance(h, logging.FileHandler):
            h.handle(record)


def main(argv: list[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return
    verb, rest = args[0], args[1:]
    if verb not in VERBS:
        # Lightning's DDP launcher starts ranks 1.. with the overrides only (`stage=<verb>` included, see below)
        staged = [a.split("=", 1)[1] for a in args if a.startswith("stage=")]
        if not staged or staged[-1] not in VERBS:
            print(f"s2d: unknown verb '{verb}'{_did_you_mean(verb)}\n\n{usage()}", file=sys.stderr)
            sys.exit(2)
        verb, rest = staged[-1], [a for a in args if not a.startswith("stage=")]
    if not CONF_DIR.is_dir():
        print(f"s2d: config folder {CONF_DIR} not found (install with 'pip install -e .')", file=sys.stderr)
        sys.exit(2)
    import hydra

    from s2d.config import register_configs

    register_configs()
    if verb == "demo" and rest and "=" not in rest[0] and not rest[0].startswith("-"):
        rest = [f"demo.video={rest[0]}", *rest[1:]]  # `s2d demo VIDEO.mp4` reads as a path, not an override
    rest = [quote_value(a) for a in rest]
    # argv[0] stays the real program: the DDP launcher re-executes it for the other ranks
    problem = _unwritable_output(rest)
    if problem:
        print(f"s2d {verb}: error: {problem}", file=sys.stderr)
        sys.exit(1)
    # stage= joins the other overrides: argparse (inside Hydra) reads one run of positional arguments, so
    # `s2d run experiment=x --cfg job` must not become `experiment=x --cfg job stage=run`
    first = next((i for i, a in enumerate(rest) if "=" in a and not a.startswith("-")), len(rest))
    sys.argv = [sys.argv[0], *rest[:first], f"stage={verb}", *rest[first:]]
    runner: Callable = hydra.main(config_path=str(CONF_DIR), config_name="s2d", version_base="1.3")(_dispatch)
    runner()


if __name__ == "__main__":
    main()
