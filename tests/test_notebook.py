"""`build_report` in a notebook: the record it returns is still report.json's dict, and as a cell's value it shows
the model's page inline (an iframe of the built index.html and a link to it), with no server started."""

from __future__ import annotations

import copy
import html
import json
import pickle
import re
from pathlib import Path

import pytest
from conftest import tiny_cnn, tiny_dataset

import reportgen
from reportgen.api import Report
from reportgen.sections.report import jsonable


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Report, Path]:
    """The report of a tiny live model on arrays, built into a site under a notebook's folder."""
    folder = tmp_path_factory.mktemp("notebook")
    data = tiny_dataset()
    report = reportgen.build_report(tiny_cnn(), (data.x_test, data.y_test), folder / "site", name="Tiny CNN",
                                    quick=True, quiet=True)
    return report, folder


def sources(markup: str) -> tuple[list[str], list[str]]:
    """The src of every iframe and the href of every link, unescaped."""
    frames = [html.unescape(s) for s in re.findall(r'<iframe[^>]*\ssrc="([^"]*)"', markup)]
    links = [html.unescape(s) for s in re.findall(r'<a[^>]*\shref="([^"]*)"', markup)]
    return frames, links


def test_the_record_is_still_the_report_json_dict(built):
    report, folder = built
    assert isinstance(report, dict) and isinstance(report, Report)
    stored = json.loads((folder / "site" / report["model"]["slug"] / "report.json").read_text(encoding="utf-8"))
    assert json.loads(json.dumps(jsonable(report))) == stored
    assert report["metrics"]["test_images"] == 60
    assert dict(report) == report and dict(report) is not report


def test_the_record_knows_its_page(built):
    report, folder = built
    page = folder / "site" / report["model"]["slug"] / "index.html"
    assert report.page == page and report.path == page
    assert page.is_file()


def test_in_a_notebook_it_shows_the_page_in_an_iframe_with_a_link(built, monkeypatch):
    report, folder = built
    monkeypatch.chdir(folder)  # the notebook's folder: Jupyter serves the files under it
    markup = report._repr_html_()
    (frame,), (link,) = sources(markup)
    assert frame == link == f"site/{report['model']['slug']}/index.html"  # relative: Jupyter serves it
    assert (folder / frame).resolve() == report.page.resolve() and (folder / frame).is_file()
    assert "Tiny CNN" in markup


def test_a_page_outside_the_notebooks_folder_is_given_by_a_file_url(built, monkeypatch, tmp_path):
    report, _ = built
    monkeypatch.chdir(tmp_path)
    (frame,), (link,) = sources(report._repr_html_())
    assert frame == link == report.page.resolve().as_uri()


def test_the_record_copies_and_pickles_with_its_page(built):
    report, _ = built
    for twin in (copy.copy(report), copy.deepcopy(report), pickle.loads(pickle.dumps(report))):
        assert isinstance(twin, Report) and twin == report and twin.page == report.page
