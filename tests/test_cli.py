"""Bad input: one line `Error: ...`, exit code 2, and no site written.

Argument errors are checked in this process; a model made here and saved to a file is built by the command
line in a new process (`reportgen_process`), as a user runs it.
"""

from pathlib import Path

import keras
import pytest
from user_models import reportgen_process

from reportgen.cli import main

REPO = Path(__file__).resolve().parent.parent


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    captured = capsys.readouterr()
    return exit_info.value.code, captured.err.strip().splitlines()


def assert_one_line_error(code, lines, fragment):
    """Exit 2 and exactly one error line, the last one (progress lines may come before it)."""
    assert code == 2
    errors = [line for line in lines if not line.startswith(" ") and not line.startswith("[")]
    assert errors == lines[-1:], lines
    assert lines[-1].startswith("Error: ")
    assert fragment in lines[-1]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["build", "--model-file", "missing.keras", "--dataset", "mnist"], "model file not found"),
        (["build", "--model", "no-such-model"], "no model named 'no-such-model'"),
        (["build", "--model-file", "x.keras"], "--model-file needs --dataset"),
        (["build", "--no-such-option"], "No such option"),
        (["build", "--config", "nope.toml"], "config file not found"),
        (["build", "--seed", "abc"], "'abc' is not a valid integer"),
    ],
)
def test_usage_errors(args, fragment, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    code, lines = run_cli([*args[:1], "--out", str(tmp_path / "site"), *args[1:]] if args[0] == "build" else args,
                          capsys)
    assert_one_line_error(code, lines, fragment)
    assert not (tmp_path / "site").exists()


def test_unknown_dataset(capsys, tmp_path):
    model = tmp_path / "m.keras"
    model.write_bytes(b"")
    code, lines = run_cli(["build", "--model-file", str(model), "--dataset", "imagenet22k",
                           "--out", str(tmp_path / "site")], capsys)
    assert_one_line_error(code, lines, "unknown dataset 'imagenet22k'")
    assert not (tmp_path / "site").exists()


def test_dataset_missing_offline(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((32, 32, 3)), keras.layers.Conv2D(2, 3), keras.layers.Flatten(),
                              keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "m.keras")
    # An empty Keras cache and every download sent to a closed local port: offline, whatever this machine has.
    offline = {"KERAS_HOME": str(tmp_path / "empty-keras-home"), "no_proxy": "", "NO_PROXY": "",
               **{name: "http://127.0.0.1:9" for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}}
    result = reportgen_process("build", "--model-file", str(tmp_path / "m.keras"), "--dataset", "cifar10",
                               "--out", str(tmp_path / "site"), "-q", env=offline)
    assert_one_line_error(result.returncode, result.stderr.strip().splitlines(), "dataset 'cifar10'")
    assert not list((tmp_path / "site").glob("*/index.html"))


def test_corrupt_model_file(capsys, tmp_path):
    model = tmp_path / "broken.keras"
    model.write_bytes(b"this is not a zip archive")
    code, lines = run_cli(["build", "--model-file", str(model), "--dataset", "mnist", "--out", str(tmp_path / "s")],
                          capsys)
    assert_one_line_error(code, lines, "could not be loaded as a Keras model")


def test_model_whose_input_is_not_an_image(tmp_path):
    model = keras.Sequential([keras.Input((20,)), keras.layers.Dense(10, activation="softmax")])
    model.save(tmp_path / "flat.keras")
    result = reportgen_process("build", "--model-file", str(tmp_path / "flat.keras"), "--dataset", "mnist",
                               "--out", str(tmp_path / "s"), "-q")
    assert_one_line_error(result.returncode, result.stderr.strip().splitlines(), "is not an image")


def test_invalid_config_names_key_and_file(capsys, tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[models]]\nname = "a"\ndataset = "mnist"\narchitecture = "mnist_3conv"\nepochz = 1\n')
    code, lines = run_cli(["build", "--config", str(config)], capsys)
    assert_one_line_error(code, lines, "unknown key 'epochz'")
    assert str(config) in lines[-1]


def test_help_reads_like_the_readme(capsys):
    code, _ = run_cli(["build", "--help"], capsys)
    assert code == 0


def test_list_shows_every_configured_model(capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(REPO)
    code, _ = run_cli(["list", "--out", str(tmp_path)], capsys)
    assert code == 0


def test_a_users_files_in_the_output_folder_are_never_replaced(capsys, tmp_path):
    """The case found by hand: `--out DIR` where DIR/mnist-3conv/ held the user's notes."""
    out = tmp_path / "site"
    (out / "mnist-3conv").mkdir(parents=True)
    (out / "mnist-3conv" / "thesis.txt").write_text("two years of work")
    (out / "index.html").write_text("<p>my page</p>")
    code, lines = run_cli(["build", "--model", "mnist-3conv", "--quick", "--out", str(out)], capsys)
    assert_one_line_error(code, lines, "not a reportgen site")
    assert (out / "mnist-3conv" / "thesis.txt").read_text() == "two years of work"
    assert (out / "index.html").read_text() == "<p>my page</p>"
    assert sorted(p.name for p in out.rglob("*")) == ["index.html", "mnist-3conv", "thesis.txt"]


def test_a_file_added_to_a_built_model_folder_stops_the_rebuild(capsys, tmp_path):
    from reportgen.build.ownership import MANIFEST, SITE_MARKER

    out = tmp_path / "site"
    (out / "mnist-3conv").mkdir(parents=True)
    (out / SITE_MARKER).write_text("")
    (out / "mnist-3conv" / "report.json").write_text("{}")
    (out / "mnist-3conv" / MANIFEST).write_text('{"files": ["report.json"]}')
    (out / "mnist-3conv" / "notes.md").write_text("mine")
    code, lines = run_cli(["build", "--model", "mnist-3conv", "--quick", "--out", str(out)], capsys)
    assert_one_line_error(code, lines, "notes.md was not written by reportgen")
    assert (out / "mnist-3conv" / "notes.md").read_text() == "mine"


def test_an_unexpected_exception_is_one_line_and_debug_shows_the_traceback(capsys, tmp_path, monkeypatch):
    import reportgen.build.site

    def broken(*args, **kwargs):
        raise RuntimeError("something inside Keras broke")

    monkeypatch.setattr(reportgen.build.site, "build_site", broken)
    args = ["build", "--model", "mnist-3conv", "--quick", "--out", str(tmp_path / "s")]
    code, lines = run_cli(args, capsys)
    assert_one_line_error(code, lines, "something inside Keras broke")
    assert not (tmp_path / "s").exists()
    code, lines = run_cli([*args, "--debug"], capsys)
    assert code == 2
    assert lines[0].startswith("Traceback") and "RuntimeError: something inside Keras broke" in lines


def test_version_prints_the_package_version(capsys):
    from reportgen import __version__

    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.strip() == f"reportgen, version {__version__}"


def test_a_folder_holding_only_a_gitkeep_is_an_empty_site_folder(tmp_path):
    """The repository keeps site/ in git with a .gitkeep: a fresh clone's first build must go there."""
    from reportgen.build.ownership import check_site
    from reportgen.util.errors import ReportgenError

    out = tmp_path / "site"
    out.mkdir()
    (out / ".gitkeep").touch()
    check_site(out, ["mnist-3conv"])  # no error
    (out / "notes.txt").write_text("mine")
    with pytest.raises(ReportgenError, match="not a reportgen site"):
        check_site(out, ["mnist-3conv"])


def test_the_front_pages_follow_each_finished_model(tmp_path, monkeypatch):
    """A finished model's page is styled and on the index while the next model still builds."""
    import json

    import reportgen.build.site as site
    from reportgen.inputs.config import BuildOptions, ModelSpec

    out = tmp_path / "site"
    seen_while_building = []

    def fake_build(job):
        seen_while_building.append(((out / "style.css").is_file(), (out / "index.html").is_file()))
        report = {"model": {"name": job.spec.name, "slug": job.spec.slug}}
        Path(job.staging).mkdir()
        (Path(job.staging) / "report.json").write_text(json.dumps(report))
        return report

    monkeypatch.setattr(site, "build_model_job", fake_build)
    monkeypatch.setattr(site, "render_index", lambda out, reports, suffix: _names_only(out, reports, suffix))
    specs = [ModelSpec(name=name, dataset="mnist") for name in ("first", "second")]
    site.build_site(specs, BuildOptions(out=out, cache_dir=tmp_path / "cache", force=True))
    assert seen_while_building == [(False, False), (True, True)]
    assert (out / "index.html").read_text() == "first second"


def _names_only(out: Path, reports: list, suffix: str) -> list[tuple[Path, Path]]:
    """A stand-in for the real front pages (rendered elsewhere): the index lists the models built so far."""
    pairs = []
    for name in ("index.html", "style.css"):
        (out / f"{name}{suffix}").write_text(" ".join(r["model"]["name"] for r in reports))
        pairs.append((out / f"{name}{suffix}", out / name))
    return pairs
