from pathlib import Path

import pytest

from reportgen.inputs.config import MODEL_FIELDS, load_config, parse_config
from reportgen.util.errors import ReportgenError
from reportgen.util.slugs import slugify

REPO = Path(__file__).resolve().parent.parent


MODEL = '[[models]]\nname = "a"\ndataset = "mnist"\narchitecture = "mnist_3conv"\n'


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
        (MODEL + 'feature_vis = { step = 9 }\n', "unknown key 'feature_vis.step'"),
        (MODEL + 'feature_vis = { scales = [0.5, 2] }\n', "scales in (0, 1]"),
        (MODEL + 'feature_vis = { param = "dct" }\n', "auto, fft, pixel"),
        (MODEL + 'feature_vis = { squash = "tanh" }\n', "clip, sigmoid, spread"),
        (MODEL + 'feature_vis = { leak = -0.1 }\n', "at least 0"),
        (MODEL + 'feature_vis = { chunk_size = 0 }\n', "'feature_vis.chunk_size' in model 'a' must be at least 1"),
        (MODEL + 'feature_vis = { learning_rate = 0.0 }\n', "must be more than 0"),
        (MODEL + 'feature_vis = { zoom = "5%" }\n', "must be float"),
        (MODEL + 'feature_vis = 3\n', "must be a table"),
        (MODEL + 'dream_size = 0\n', "'dream_size' in model 'a' must be at least 1"),
        (MODEL + 'dream_size = "512"\n', "'dream_size' in model 'a' must be int"),
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


def test_feature_vis_settings_come_from_the_config(tmp_path):
    import dataclasses

    from reportgen.inputs.config import FEATURE_VIS_KEYS
    from reportgen.methods.featvis import FeatVisSettings

    assert set(FEATURE_VIS_KEYS) <= {f.name for f in dataclasses.fields(FeatVisSettings)}
    config = load_config(write(tmp_path, MODEL + 'feature_vis = { steps = 64, scales = [0.5, 1], zoom = 0 }\n'))
    settings = FeatVisSettings.from_config(config.models[0].feature_vis)
    assert (settings.steps, settings.scales, settings.zoom) == (64, (0.5, 1.0), 0)
    assert settings.stages() == [(0.5, 32), (1.0, 32)]


@pytest.mark.parametrize("key", list(MODEL_FIELDS))
def test_every_model_key_is_checked(key):
    """A key added to ModelSpec is type-checked too: a plain one through its annotation, others by their branch."""
    wrong = "yes" if MODEL_FIELDS[key].type in (bool, "bool") else True  # a value of the wrong type for every key
    model = {"name": "a", "dataset": "mnist", "architecture": "mnist_3conv", key: wrong}
    with pytest.raises(ReportgenError) as error:
        parse_config({"models": [model]}, source="reportgen.toml", root=REPO)
    assert f"'{key}'" in str(error.value) and "reportgen.toml" in str(error.value)
