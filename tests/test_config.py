from pathlib import Path

import pytest

from reportgen.config import load_config
from reportgen.errors import ReportgenError
from reportgen.slugs import slugify

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "reportgen.toml"
    path.write_text(text)
    return path


def test_shipped_config_has_the_four_seed_models():
    config = load_config(REPO / "reportgen.toml")
    assert [m.name for m in config.models] == ["mnist-3conv", "mnist-oip", "fashion-2conv", "cats-vs-dogs"]
    assert {m.dataset for m in config.models} == {"mnist", "fashion_mnist", "cats_vs_dogs"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[models]]\nname = "a"\ndataset = "mnist"\narchitecture = "mnist_3conv"\nepoch = 3\n', "unknown key 'epoch'"),
        ('[[models]]\nname = "a"\ndataset = "mnist"\narchitecture = "mnist_3conv"\nepochs = "3"\n', "'epochs'"),
        ('[[models]]\nname = "a"\narchitecture = "mnist_3conv"\n', "missing the required key 'dataset'"),
        ('[[models]]\nname = "a"\ndataset = "mnist"\n', "exactly one of 'architecture' or 'model_file'"),
        ('[build]\nseeds = 1\n', "unknown key 'build.seeds'"),
        ('[build]\nseed = "x"\n', "'build.seed' must be int"),
        ('[[models]]\nname = "a"\ndataset = "mnist"\narchitecture = "x"\nepochs = 0\n', "at least 1"),
        ("[[models]\n", "not valid TOML"),
    ],
)
def test_invalid_config_names_the_key_and_the_file(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ReportgenError) as error:
        load_config(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_missing_config_file_is_an_error(tmp_path):
    with pytest.raises(ReportgenError, match="config file not found"):
        load_config(tmp_path / "nope.toml")


def test_fingerprint_changes_with_what_changes_the_weights():
    spec = load_config(REPO / "reportgen.toml").models[0]
    assert spec.fingerprint(0, False) == spec.fingerprint(0, False)
    assert spec.fingerprint(0, False) != spec.fingerprint(1, False)
    assert spec.fingerprint(0, False) != spec.fingerprint(0, True)


@pytest.mark.parametrize("name", ["../../etc", "a/b", "a\\b", "<script>", "Ünïcødé", "..", "", "con&'\"x"])
def test_slugs_are_safe_file_names(name):
    slug = slugify(name)
    assert slug and all(c.isascii() and (c.isalnum() or c in "-_") for c in slug)
    assert slug not in (".", "..")


def test_slugs_keep_different_names_apart():
    names = ["a/b", "a_b", "a-b", "A_B", "a b", "a.b"]
    assert len({slugify(n) for n in names}) == len(names)
    assert slugify("conv2d_1") == "conv2d_1"
