"""The `reportgen` command: build, list and serve report sites.

Every usage or input error ends as one line, `Error: ...`, with exit code 2.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import sys
import traceback
from pathlib import Path

import click

from reportgen import __version__
from reportgen.inputs.config import PREPROCESS_MODES, BuildOptions, Config, ModelSpec, load_config
from reportgen.util import progress
from reportgen.util.errors import ReportgenError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="reportgen")
def cli() -> None:
    """Static report sites that show what Keras CNNs have learned.

    `reportgen build` trains (or loads) every model in reportgen.toml, runs every
    visualization and writes site/ (HTML and Markdown, ready for GitHub Pages).
    """


def config_option(f):
    return click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path),
                        help="Config file (default: reportgen.toml in the current folder).")(f)


@cli.command()
@config_option
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Build only this configured model (repeatable). Default: all of them.")
@click.option("--model-file", type=click.Path(path_type=Path),
              help="Report on your own saved model (.keras or .h5) instead; needs --dataset.")
@click.option("--output", "output_name", metavar="NAME",
              help="For a model with several outputs: the classifier output to report on, by its layer's name.")
@click.option("--import", "imports", multiple=True, metavar="MODULE_OR_FILE",
              help="Import this module (dotted name) or .py file before loading the model, so the custom layers "
                   "it registers load (repeatable).")
@click.option("--trust-model-code", is_flag=True,
              help="Load the model with Keras' safe mode off, so Lambda layers load: this runs Python code stored "
                   "in the model file. Only for files you trust.")
@click.option("--checkpoints", type=click.Path(path_type=Path), metavar="DIR",
              help="For --model-file: a folder of the files keras.callbacks.ModelCheckpoint wrote during training "
                   "(one .keras per epoch, the epoch in the name), shown in \"Learning over time\".")
@click.option("--dataset", help="Dataset for --model-file: mnist, fashion_mnist, cifar10, cats_vs_dogs, "
                                "folder:PATH or npz:PATH (x_test, y_test).")
@click.option("--name", help="Report name for --model-file (default: the file's name).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Site folder (default: site/).")
@click.option("--retrain", is_flag=True, help="Train again even when a cached model exists.")
@click.option("--force", is_flag=True, help="Rebuild every page even when nothing changed.")
@click.option("--quick", is_flag=True, help="Small, fast version of every step (1 epoch on a subset), for smoke runs.")
@click.option("--seed", type=int, help="Random seed for training and visualizations (default: from config, else 0).")
@click.option("--dream-image", type=click.Path(dir_okay=False, path_type=Path),
              help="Photo for DeepDream (default: a sample image shipped with scikit-image).")
@click.option("--input-range", callback=lambda ctx, param, value: parse_range(value), metavar="LOW,HIGH",
              help="Pixel values the model was trained on, e.g. 0,255 or -1,1 (default: detected from a "
                   "Rescaling or Normalization layer at the model's start, else 0,1).")
@click.option("--preprocess", type=click.Choice(PREPROCESS_MODES), metavar="MODE",
              help="The model's images went through keras.applications' preprocess_input in this mode, outside the "
                   "model: caffe (VGG, ResNet50), tf (MobileNet(V2), ResNetV2, Xception, Inception) or torch "
                   "(DenseNet). A per-channel mean and std: preprocess = { ... } in the config.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="auto", metavar="[auto|local|ADDRESS]",
              help="Build the models on Ray, one task per model: auto (the cluster RAY_ADDRESS or `ray start` names, "
                   "else a private one), local (a private one on this machine) or HOST:PORT. Needs "
                   "pip install \"reportgen[ray]\". Default: [build] executor in the config, else in this process.")
@click.option("-q", "--quiet", is_flag=True, help="No progress output: only errors.")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error.")
def build(config_path, models, model_file, output_name, imports, trust_model_code, checkpoints, dataset, name, out,
          retrain, force, quick, seed, dream_image, input_range, preprocess, ray_address, quiet, debug) -> None:
    """Train or load each model, run every visualization and write the site.

    \b
    Examples:
      reportgen build                        every model in reportgen.toml into site/
      reportgen build --model mnist-3conv    one configured model
      reportgen build --quick --out /tmp/s   a fast smoke build
      reportgen build --model-file my.keras --dataset mnist --name mine
    """
    from reportgen.build.site import build_site

    progress.set_quiet(quiet)
    config = load_config(config_path)
    specs = select_models(config, models, model_file, dataset, name)
    overrides = {"dream_image": str(dream_image) if dream_image else None,
                 "checkpoints": str(checkpoints) if checkpoints else None}
    overrides = {key: value for key, value in overrides.items() if value is not None}
    overrides.update(input_overrides(input_range, preprocess))
    if overrides:
        specs = [ModelSpec(**{**vars(s), **overrides}) for s in specs]
    specs = [model_file_overrides(s, output_name, imports, trust_model_code) for s in specs]
    options = BuildOptions(
        out=out or config.resolve(config.out),
        cache_dir=config.resolve(config.cache_dir),
        seed=config.seed if seed is None else seed,
        quick=quick,
        retrain=retrain,
        force=force,
        templates=config.templates_folder(),
        executor="ray" if ray_address else config.executor,
        ray_address=ray_address or config.ray_address,
        cpus_per_model=config.cpus_per_model,
        gpus_per_model=config.gpus_per_model,
        granularity=config.granularity,
        batch_memory_share=config.batch_memory_share,
        compares=config.compares,
    )
    reports = build_site(specs, options)
    for report in reports:
        progress.log(f"{report['model']['name']}: test accuracy {report['metrics']['test_accuracy']:.4f}")
    click.echo(f"Site written to {options.out / 'index.html'}")


def parse_range(value: str | None) -> list[float] | None:
    """"0,255" -> [0.0, 255.0]."""
    if value is None:
        return None
    try:
        low, high = (float(part) for part in value.split(","))
    except ValueError:
        raise click.BadParameter(f"{value!r} is not LOW,HIGH (e.g. 0,255 or -1,1)",
                                 param_hint="'--input-range'") from None
    if not low < high:
        raise click.BadParameter(f"{value!r}: LOW must be below HIGH", param_hint="'--input-range'")
    return [low, high]


def input_overrides(input_range: list[float] | None, preprocess: str | None) -> dict[str, object]:
    """--input-range or --preprocess replaces both of a configured model's settings; neither keeps them."""
    if input_range is not None and preprocess is not None:
        raise ReportgenError("give --input-range or --preprocess, not both: preprocess includes the range")
    if input_range is None and preprocess is None:
        return {}
    return {"input_range": input_range, "preprocess": preprocess}


def model_file_overrides(spec: ModelSpec, output_name: str | None, imports: tuple[str, ...],
                         trust_model_code: bool) -> ModelSpec:
    """The spec with --output, --import (added to its imports) and --trust-model-code applied."""
    changes: dict[str, object] = {"imports": [*spec.imports, *imports]}
    if output_name is not None:
        changes["output"] = output_name
    if trust_model_code:
        changes["trust_model_code"] = True
    return dataclasses.replace(spec, **changes)


def select_models(config: Config, names: tuple[str, ...], model_file: Path | None, dataset: str | None,
                  name: str | None) -> list[ModelSpec]:
    if model_file is not None:
        if not dataset:
            raise ReportgenError("--model-file needs --dataset (e.g. --dataset mnist)")
        return [ModelSpec(name=name or model_file.stem, dataset=dataset, model_file=str(model_file))]
    if dataset or name:
        raise ReportgenError("--dataset and --name go with --model-file")
    specs = [config.model(n) for n in names] if names else config.models
    if not specs:
        raise ReportgenError("no models to build: add [[models]] to reportgen.toml or pass --model-file")
    return specs


@cli.command()
@config_option
@click.argument("model_a", metavar="A")
@click.argument("model_b", metavar="B")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Site folder (default: site/).")
@click.option("-q", "--quiet", is_flag=True, help="No progress output: only errors.")
@click.option("--debug", is_flag=True, help="Show the full traceback of an unexpected error.")
def compare(config_path, model_a, model_b, out, quiet, debug) -> None:
    """Compare two models of a built site on one page, linked from the index and both models' pages.

    \b
    A and B are model names; NAME@1 is that model's build before the current one (from its history/).
    Examples:
      reportgen compare mnist-3conv mnist-oip
      reportgen compare mnist-3conv mnist-3conv@1     after retraining: before and now
    """
    from reportgen.build.compare import compare_models

    progress.set_quiet(quiet)
    config = load_config(config_path)
    options = BuildOptions(out=out or config.resolve(config.out), cache_dir=config.resolve(config.cache_dir),
                           seed=config.seed, templates=config.templates_folder())
    from reportgen.build.fingerprint import using_templates

    with using_templates(options.templates):
        record = compare_models(options.out, model_a, model_b, config.models, options)
    click.echo(f"Compare page written to {options.out / 'compare' / (record['a']['key'] + '--' + record['b']['key'])}"
               "/index.html")


@cli.command(name="list")
@config_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Site folder (default: site/).")
def list_models(config_path, out) -> None:
    """The configured models: trained (cached), built (in the site) and stale (would be rebuilt)."""
    from reportgen.build.fingerprint import using_templates
    from reportgen.build.status import model_status

    config = load_config(config_path)
    options = BuildOptions(out=out or config.resolve(config.out), cache_dir=config.resolve(config.cache_dir),
                           seed=config.seed)
    with using_templates(config.templates_folder()):  # the user's templates count in "stale" too
        rows = [model_status(spec, options) for spec in config.models]
    if not rows:
        click.echo("No models configured.")
        return
    width = max(len(r["name"]) for r in rows)
    click.echo(f"{'model':<{width}}  {'dataset':<14} {'trained':<8} {'built':<6} {'stale':<6} accuracy")
    for r in rows:
        acc = f"{r['accuracy']:.4f}" if r["accuracy"] is not None else "-"
        click.echo(f"{r['name']:<{width}}  {r['dataset']:<14} {_yes(r['trained']):<8} {_yes(r['built']):<6} "
                   f"{_yes(r['stale']):<6} {acc}")


def _yes(flag: bool | None) -> str:
    return "-" if flag is None else ("yes" if flag else "no")


@cli.command()
@config_option
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Site folder (default: site/).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port on 127.0.0.1.")
def serve(config_path, out, port) -> None:
    """Preview the site at http://127.0.0.1:PORT/ (Ctrl-C stops)."""
    import http.server

    config = load_config(config_path)
    out = out or config.resolve(config.out)
    if not (out / "index.html").is_file():
        raise ReportgenError(f"no site in {out}: run `reportgen build` first")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(out))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise ReportgenError(f"cannot listen on 127.0.0.1:{port} ({exc.strerror})") from None
    click.echo(f"Serving {out} at http://127.0.0.1:{server.server_address[1]}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    """Entry point: click without its multi-line usage errors, and every failure as one `Error:` line
    (`--debug` shows the traceback of an unexpected one)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        with native_stderr_dropped(unless="--debug" in argv):
            code = cli.main(args=argv, prog_name="reportgen", standalone_mode=False)
    except click.UsageError as exc:
        fail(exc.format_message())
    except ReportgenError as exc:
        fail(str(exc))
    except (KeyboardInterrupt, click.Abort):
        click.echo("Error: interrupted; the site is as it was before this model's build", err=True)
        sys.exit(130)
    except Exception as exc:
        if "--debug" in argv:
            traceback.print_exc()
        detail = " ".join(str(exc).split())[:300]
        fail(f"{type(exc).__name__}: {detail} (an unexpected error: the site is as it was before this model's "
             "build; --debug shows where it happened)")
    sys.exit(code or 0)


@contextlib.contextmanager
def native_stderr_dropped(unless: bool = False):
    """While the command runs, what native code writes to the process's stderr is dropped, and Python's own
    stderr (progress, warnings, the `Error:` line) still reaches the terminal through a copy of it.

    TensorFlow's C++ start-up lines (absl's "All log messages before absl::InitializeLog()", oneDNN's notice,
    a failed cuInit on a machine without a GPU) bypass TF_CPP_MIN_LOG_LEVEL and would stand before every
    `Error:` line. Nothing changes once TensorFlow is imported (a notebook, the tests) or with `unless`
    (`--debug`)."""
    if unless or "tensorflow" in sys.modules:
        yield
        return
    sys.stderr.flush()
    terminal = os.dup(2)
    python_stderr = sys.stderr
    sys.stderr = open(terminal, "w", buffering=1, encoding=python_stderr.encoding or "utf-8",  # noqa: SIM115
                      errors="backslashreplace", closefd=False)
    with open(os.devnull, "wb") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(terminal, 2)
        sys.stderr = python_stderr
        os.close(terminal)


def build_main() -> None:
    """`python generate.py [OPTIONS]` is `reportgen build [OPTIONS]`."""
    main(["build", *sys.argv[1:]])


def fail(message: str) -> None:
    click.echo(f"Error: {' '.join(message.split())}", err=True)
    sys.exit(2)
