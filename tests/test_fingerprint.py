"""The inputs fingerprint: what makes a rebuild redo a model's pages."""

from reportgen.build import fingerprint


def test_a_changed_source_file_or_template_changes_the_code_digest(tmp_path, monkeypatch):
    package, templates = tmp_path / "reportgen", tmp_path / "templates"
    (package / "sections").mkdir(parents=True)
    templates.mkdir()
    (package / "sections" / "feature_vis.py").write_text("STEPS = 128\n")
    (templates / "model.html").write_text("<h1>{{ name }}</h1>")
    monkeypatch.setattr(fingerprint, "PACKAGE_DIR", package)
    monkeypatch.setattr(fingerprint, "TEMPLATES_DIR", templates)
    before = fingerprint.code_digest()
    assert fingerprint.code_digest() == before
    (package / "sections" / "feature_vis.py").write_text("STEPS = 256\n")
    after_code = fingerprint.code_digest()
    assert after_code != before
    (templates / "model.html").write_text("<h2>{{ name }}</h2>")
    edited = fingerprint.code_digest()
    assert edited not in (before, after_code)
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.cpython-311.py").write_text("compiled")
    assert fingerprint.code_digest() == edited  # bytecode caches are not the code
