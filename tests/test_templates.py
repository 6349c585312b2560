"""Your own templates: a templates/ folder beside reportgen.toml (or `[build] templates`) overrides the package's
templates file by file; its static/ files reach the site; overrides count in the rebuild fingerprint; a broken
template is one `Error:` line naming the file and line, and the site stays as it was.

Each build is a real `reportgen build --quick` of a tiny saved model on a small `.npz` dataset, run in this
process (a few seconds).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_cnn, tiny_dataset

from reportgen.build.fingerprint import inputs_fingerprint, using_templates
from reportgen.cli import main
from reportgen.inputs.config import ModelSpec, load_config
from reportgen.util import progress

FOOTER = "ACME Vision Lab: internal report"
LOGO = b"\x89PNG\r\n\x1a\n not really a picture, but a file the pages link"
BASE_OVERRIDE = """{% extends "reportgen/base.html" %}
{% block brand %}
    <a class="brand" href="{{ site_root }}index.html">
      <img class="logo" src="{{ site_root }}static/logo.png" alt="ACME"> ACME</a>
{% endblock %}
{% block footer %}
<footer>""" + FOOTER + """, built by reportgen {{ version }}</footer>
{% endblock %}
"""


@pytest.fixture(scope="module")
def model_files(tmp_path_factory) -> tuple[Path, Path]:
    """A tiny saved CNN and its test set as an .npz dataset."""
    folder = tmp_path_factory.mktemp("model")
    model = tiny_cnn()
    model.save(folder / "tiny.keras")
    data = tiny_dataset()
    np.savez(folder / "data.npz", x_test=data.x_test, y_test=data.y_test, class_names=np.array(data.class_names))
    return folder / "tiny.keras", folder / "data.npz"


@pytest.fixture
def project(tmp_path, model_files) -> Path:
    """A project folder: reportgen.toml with the tiny model, the site going to site/."""
    model, data = model_files
    (tmp_path / "reportgen.toml").write_text(
        f'[build]\nout = "site"\ncache_dir = ".cache"\n\n'
        f'[[models]]\nname = "tiny"\nmodel_file = "{model.as_posix()}"\ndataset = "npz:{data.as_posix()}"\n',
        encoding="utf-8")
    return tmp_path


def build(project: Path, capsys, *extra: str) -> tuple[int, list[str]]:
    """`reportgen build --quick -q` of the project: exit code and the stderr lines."""
    was_quiet = progress.is_quiet()
    try:
        with pytest.raises(SystemExit) as exit_info:
            main(["build", "--config", str(project / "reportgen.toml"), "--quick", "-q", *extra])
    finally:
        progress.set_quiet(was_quiet)
    return exit_info.value.code, capsys.readouterr().err.strip().splitlines()


def override(project: Path, name: str, text: str, folder: str = "templates") -> Path:
    path = project / folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def snapshot(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}


def test_a_base_override_adds_a_logo_and_a_footer_to_every_page(project, capsys):
    override(project, "base.html", BASE_OVERRIDE)
    (project / "templates" / "static").mkdir()
    (project / "templates" / "static" / "logo.png").write_bytes(LOGO)
    code, lines = build(project, capsys)
    assert code == 0, lines
    site = project / "site"
    assert (site / "static" / "logo.png").read_bytes() == LOGO
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 5  # the index, the model page, its layer and unit pages
    for page in pages:
        html = page.read_text(encoding="utf-8")
        assert FOOTER in html, page
        assert "Every picture is stored with the numbers" not in html  # the package's footer is replaced
        (src,) = re.findall(r'<img class="logo" src="([^"]+)"', html)
        assert (page.parent / src).resolve() == (site / "static" / "logo.png").resolve(), page
    model_page = (site / "tiny" / "index.html").read_text(encoding="utf-8")
    assert "<title>tiny · reportgen</title>" in model_page  # the package's model.html still fills base's blocks
    assert 'class="subnav"' in model_page
    assert FOOTER not in (site / "tiny" / "index.md").read_text(encoding="utf-8")  # Markdown has its own templates


def test_build_templates_key_names_another_folder_and_a_stylesheet_override(project, capsys):
    config = project / "reportgen.toml"
    config.write_text(config.read_text().replace('out = "site"', 'out = "site"\ntemplates = "look"'))
    override(project, "style.css", "body { color: rebeccapurple }\n", folder="look")
    override(project, "templates/base.html", "{% broken", folder=".")  # not used: the key wins
    code, lines = build(project, capsys)
    assert code == 0, lines
    assert (project / "site" / "style.css").read_text() == "body { color: rebeccapurple }\n"
    assert load_config(config).templates_folder() == project / "look"


def test_a_missing_templates_folder_is_an_error(project, capsys):
    config = project / "reportgen.toml"
    config.write_text(config.read_text().replace('out = "site"', 'out = "site"\ntemplates = "nowhere"'))
    code, lines = build(project, capsys)
    assert code == 2
    assert lines[-1].startswith("Error: ") and "nowhere" in lines[-1]
    assert not (project / "site").exists()


def test_a_syntax_error_is_one_line_with_file_and_line_and_the_site_stays(project, capsys):
    code, lines = build(project, capsys)
    assert code == 0, lines
    before = snapshot(project / "site")
    path = override(project, "model.html", '{% extends "base.html" %}\n{% block content %}\n{% if %}\n{% endblock %}\n')
    code, lines = build(project, capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("Error: template "), lines
    assert str(path) in lines[0] and "line 3" in lines[0]
    assert snapshot(project / "site") == before


def test_an_undefined_variable_is_one_line_with_file_and_line_and_the_site_stays(project, capsys):
    code, lines = build(project, capsys)
    assert code == 0, lines
    before = snapshot(project / "site")
    path = override(project, "model.html",
                    '{% extends "base.html" %}\n{% block content %}\n<p>{{ report.model.name }}</p>\n'
                    '<p>{{ no_such_value }}</p>\n{% endblock %}\n')
    code, lines = build(project, capsys)
    assert code == 2
    assert len(lines) == 1 and lines[0].startswith("Error: template "), lines
    assert f"{path}, line 4" in lines[0] and "no_such_value" in lines[0]
    assert snapshot(project / "site") == before
    assert not [p for p in (project / "site").iterdir() if p.name.startswith(".staging") or ".tmp-" in p.name]


def test_changing_an_override_changes_the_fingerprint_and_rebuilds(project, capsys):
    path = override(project, "base.html", BASE_OVERRIDE)
    code, lines = build(project, capsys)
    assert code == 0, lines
    report = project / "site" / "tiny" / "report.json"
    first = json.loads(report.read_text())["inputs_fingerprint"]
    code, _ = build(project, capsys)
    assert code == 0 and json.loads(report.read_text())["inputs_fingerprint"] == first  # up to date: skipped
    path.write_text(BASE_OVERRIDE.replace(FOOTER, "ACME, second edition"), encoding="utf-8")
    code, lines = build(project, capsys)
    assert code == 0, lines
    assert json.loads(report.read_text())["inputs_fingerprint"] != first
    assert "ACME, second edition" in (project / "site" / "tiny" / "index.html").read_text(encoding="utf-8")


def test_the_fingerprint_counts_each_override_but_not_static_files(tmp_path):
    spec = ModelSpec(name="m", dataset="mnist", architecture="mnist_3conv")
    plain = inputs_fingerprint(spec, 0, True, "w")
    folder = tmp_path / "templates"
    (folder / "static").mkdir(parents=True)
    with using_templates(folder):
        empty = inputs_fingerprint(spec, 0, True, "w")
        (folder / "unit.html").write_text("a")
        one = inputs_fingerprint(spec, 0, True, "w")
        (folder / "unit.html").write_text("b")
        edited = inputs_fingerprint(spec, 0, True, "w")
        (folder / "static" / "logo.png").write_bytes(LOGO)
        assert inputs_fingerprint(spec, 0, True, "w") == edited  # copied on every build anyway
    assert len({plain, empty, one, edited}) == 4
    assert inputs_fingerprint(spec, 0, True, "w") == plain  # outside the build, the package's templates only


def test_a_templates_folder_without_a_config_file_is_not_taken(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "templates").mkdir()
    assert load_config().templates_folder() is None
    (tmp_path / "reportgen.toml").write_text("")
    assert load_config().templates_folder() == tmp_path.resolve() / "templates"


def test_a_model_named_static_clashes_with_the_static_files(project, capsys):
    (project / "templates" / "static").mkdir(parents=True)
    config = project / "reportgen.toml"
    config.write_text(config.read_text().replace('name = "tiny"', 'name = "static"'))
    code, lines = build(project, capsys)
    assert code == 2 and lines[-1].startswith("Error: ") and "rename the model" in lines[-1]
    assert not (project / "site").exists()


def test_an_override_of_a_package_template_that_is_not_found_names_the_include(project, capsys):
    path = override(project, "index.html", '{% extends "base.html" %}\n{% block content %}\n'
                                           '{% include "missing.html" %}\n{% endblock %}\n')
    code, lines = build(project, capsys)
    assert code == 2
    assert lines[-1].startswith("Error: template ")
    assert f"{path}, line 3" in lines[-1] and "missing.html" in lines[-1]
