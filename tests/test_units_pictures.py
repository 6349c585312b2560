"""Unit pictures: neuron images, diverse groups, resemblance, per-unit PNGs and the links between pages,
each number checked against a direct computation on a tiny model."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import keras
import numpy as np
import pytest

from reportgen.build.render import render_page
from reportgen.methods.featvis import DIVERSITY_IMAGES, FeatVisSettings, gram_similarity, visualize_model
from reportgen.sections import feature_vis, units
from reportgen.util.imaging import magnified

FAST = FeatVisSettings(steps=48)


@pytest.fixture
def built(tiny_context):
    """The feature-vis and units sections of the tiny model, built in page order."""
    ctx = tiny_context
    ctx.spec.feature_vis = {"steps": 48}
    vis = feature_vis.build(ctx)
    return ctx, vis, units.build(ctx, vis.handoff)


def _layer_output(model: keras.Model, name: str, images: np.ndarray) -> np.ndarray:
    return keras.Model(model.input, model.get_layer(name).output)(images).numpy()


def _centred_cosine(a: np.ndarray, b: np.ndarray) -> float:
    keep = ~(np.isnan(a) | np.isnan(b))
    a, b = a[keep] - a[keep].mean(), b[keep] - b[keep].mean()
    return float(np.dot(a, b) / np.sqrt(np.dot(a, a) * np.dot(b, b)))


def _crop(image: np.ndarray, y0: int, x0: int, size: tuple[int, int]) -> np.ndarray:
    """A size[0] x size[1] window of `image` from (y0, x0), NaN outside it, by plain loops."""
    out = np.full((*size, image.shape[-1]), np.nan)
    for dy in range(size[0]):
        for dx in range(size[1]):
            if 0 <= y0 + dy < image.shape[0] and 0 <= x0 + dx < image.shape[1]:
                out[dy, dx] = image[y0 + dy, x0 + dx]
    return out


@pytest.mark.filterwarnings("ignore:Mean of empty slice")  # a pixel outside every crop
def test_resemblance_matches_a_direct_computation(built):
    ctx, vis, section = built
    record = json.loads(json.dumps(section.to_json()))["data"]
    x = ctx.data.x_test
    checked = 0
    for i, name in enumerate(["conv_a", "conv_b"]):
        rf = record[name]["receptive_field"]
        size, jump, start = rf["size"], rf["jump"], rf["start"]
        neuron_images = vis.handoff[name].neuron_images
        out_h, out_w = _layer_output(ctx.model, name, x[:1]).shape[1:3]
        found = record[name]["resemblance"]["units"]
        live = [u for u in range(len(record[name]["dataset_max"])) if record[name]["dataset_max"][u] > 0]
        assert sorted(map(int, found)) == live  # every live filter, no dead one
        for u in live:
            top = record[name]["top"]
            ranks = [r for r in range(9) if top["activation"][u][r] > 0]
            positions = [top["position"][u][r] for r in ranks]
            centre = (out_h // 2, out_w // 2)
            crop = _crop(neuron_images[u], start[0] + centre[0] * jump[0], start[1] + centre[1] * jump[1], size)
            others = np.random.default_rng([ctx.seed, i, u]).choice(len(x), size=len(ranks), replace=False)
            means = []
            for ids in ([top["test_index"][u][r] for r in ranks], others):
                crops = np.stack([_crop(x[j], start[0] + y * jump[0], start[1] + xx * jump[1], size)
                                  for j, (y, xx) in zip(ids, positions)])
                means.append(np.nanmean(crops, axis=0))
            expected = [_centred_cosine(crop, mean) for mean in means]
            assert found[str(u)]["top9"] == pytest.approx(expected[0], abs=2e-6)
            assert found[str(u)]["random"] == pytest.approx(expected[1], abs=2e-6)
            assert found[str(u)]["beats_random"] == (expected[0] > expected[1])
            checked += 1
        shares = [found[str(u)]["beats_random"] for u in live]
        assert record[name]["resemblance"]["share"] == pytest.approx(np.mean(shares))
    assert checked >= 6


def test_the_neuron_image_maximises_the_central_unit(tiny_context):
    model = tiny_context.model
    chosen = np.arange(6)
    result = visualize_model(model, {"conv_b": chosen}, FAST, seed=0, neurons={"conv_b": chosen})["conv_b"]
    on_neuron = _layer_output(model, "conv_b", result.neuron.images)
    on_channel = _layer_output(model, "conv_b", result.images)
    on_test = _layer_output(model, "conv_b", tiny_context.data.x_test)
    y, x = on_neuron.shape[1] // 2, on_neuron.shape[2] // 2
    centre = on_neuron[np.arange(6), y, x, chosen]
    np.testing.assert_allclose(result.neuron.activation, centre, rtol=1e-4, atol=1e-5)  # the number is the centre
    live = centre > 0  # the untrained tiny model has units no image turns on
    assert live.sum() >= 3
    # The centre is driven harder than by the whole-map image and than by any test image.
    assert np.all(centre[live] > on_channel[np.arange(6), y, x, chosen][live])
    assert np.all(centre[live] > on_test[:, y, x][:, chosen].max(axis=0)[live])


def test_diverse_images_differ_and_the_penalty_lowers_their_gram_similarity(tiny_context):
    model = tiny_context.model
    chosen = {"conv_b": np.array([0, 2, 3, 5])}
    groups = {}
    for weight in (0.0, 3.0):
        settings = FeatVisSettings(steps=48, diversity=weight)
        groups[weight] = visualize_model(model, {}, settings, seed=0, diverse=chosen)["conv_b"].diversity
    penalised = groups[3.0]
    assert penalised.images.shape[:2] == (4, DIVERSITY_IMAGES)
    for group in penalised.images:  # no two images of a group alike
        for a in range(DIVERSITY_IMAGES):
            for b in range(a):
                assert np.abs(group[a] - group[b]).mean() > 0.05
    # The stored numbers are the layer's own: map means and the Gram similarity of its activations.
    maps = _layer_output(model, "conv_b", penalised.images.reshape(-1, *penalised.images.shape[2:]))
    maps = maps.reshape(4, DIVERSITY_IMAGES, -1, maps.shape[-1])
    np.testing.assert_allclose(penalised.activation, maps.mean(axis=2)[np.arange(4), :, chosen["conv_b"]],
                               rtol=1e-4, atol=1e-6)
    direct, closest = [], []
    for group, images in zip(maps, penalised.images):
        deviations = [m - m.mean(axis=0) for m in group]  # each map's deviation from its mean over positions
        grams = [(d.T @ d).ravel() / np.linalg.norm(d.T @ d) for d in deviations]
        pairs = [(a, b) for a in range(4) for b in range(4) if a != b]
        direct.append(np.mean([grams[a] @ grams[b] for a, b in pairs]))
        closest.append(min(np.abs(images[a] - images[b]).mean() for a, b in pairs))
    np.testing.assert_allclose(penalised.similarity, direct, rtol=1e-4)
    np.testing.assert_allclose(gram_similarity(maps), direct, rtol=1e-4)
    np.testing.assert_allclose(penalised.least_difference, closest, rtol=1e-5)
    np.testing.assert_array_equal(penalised.alike, (np.array(direct) >= 0.95) | (np.array(closest) < 0.05))
    assert penalised.similarity.mean() < groups[0.0].similarity.mean() - 0.05


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))


def test_gallery_tiles_link_to_unit_pages_and_every_listed_png_exists(built):
    ctx, vis, section = built
    pages = {page.path for page in section.pages}
    galleries = [figure for figure in vis.figures if figure.tiles]
    assert [figure.title for figure in galleries] == ["conv_a", "conv_b"]
    for figure in galleries:
        assert figure.tile_size == magnified(12, 12) == (108, 108)
        for tile in figure.tiles:
            assert tile["href"] in pages
            assert (ctx.out_dir / tile["path"]).is_file()
    listed = []
    for layer in vis.data["layers"].values():
        for record in layer["filters"]:
            images = record["images"]
            listed += [images["feature_vis"], images["neuron"], *images["diversity"]]
            listed += [images["neuron_field"]] if record["uniform"] else []
            assert len(images["diversity"]) == len(record["diversity"]["activation"]) == DIVERSITY_IMAGES
    for name in ("conv_a", "conv_b"):  # report.json lists each paged filter's crops and projections too
        pictures = section.to_json()["data"][name]["unit_pictures"]
        assert sorted(map(int, pictures)) == sorted(units.paged_units(ctx)[name].tolist())
        for u, record in pictures.items():
            assert record["page"] == f"{name}/{u}.html" in pages and len(record["top"]) == 9
            listed += [*record["top"], record["projections"]]
    shown = [e["image"] for page in section.pages for e in page.context.get("examples", [])]
    assert set(shown) <= set(listed)
    assert len(set(listed)) == len(listed) > 10 * 15
    assert all((ctx.out_dir / path).is_file() for path in listed)


def test_unit_page_shows_its_pictures_magnified_and_linked(built):
    ctx, _, section = built
    page = next(page for page in section.pages if page.path == "conv_b/3.html")
    render_page(ctx.out_dir, {"model": {"name": "tiny"}}, section, page)
    parser = _Refs()
    parser.feed((ctx.out_dir / "conv_b" / "3.html").read_text())
    images = [attrs for tag, attrs in parser.tags if tag == "img"]
    links = {attrs.get("href") for tag, attrs in parser.tags if tag == "a"}
    kinds = [src for attrs in images if "/units/conv_b/3-" in (src := attrs["src"])]
    assert sum("feature-vis" in src for src in kinds) == 1 and sum("neuron" in src for src in kinds) == 1
    assert sum("diversity" in src for src in kinds) == DIVERSITY_IMAGES
    assert sum("-top-" in src for src in kinds) == 9
    for attrs in images:
        if "feature-vis" in attrs["src"]:
            assert (attrs["width"], attrs["height"]) == ("108", "108")  # 12 px shown 9x
        if "/units/" in attrs["src"]:
            assert attrs["src"] in links  # each picture links to its own PNG
            assert (ctx.out_dir / "conv_b" / attrs["src"]).resolve().is_file()
    assert {"2.html", "4.html", "index.html"} <= links
    assert magnified(28, 28) == (112, 112)


def test_the_picture_budget_keeps_every_unit_when_it_fits_and_spreads_what_it_keeps_when_not():
    from reportgen.methods.budget import Budget, Plan, pictured

    units = {"a": np.arange(8), "b": np.arange(0, 40, 2), "c": np.array([3, 5])}
    whole = Plan(Budget(picture_work=30 * 3 * 1000), units, {"a": 8, "b": 40, "c": 6})
    assert {path: list(chosen) for path, chosen in pictured(whole, 1000, 3).items()} == \
        {path: list(chosen) for path, chosen in units.items()}
    tight = pictured(Plan(Budget(picture_work=9 * 3 * 1000), units, whole.channels), 1000, 3)
    assert [len(chosen) for chosen in tight.values()] == [3, 3, 2]  # 9 fit: 3 per layer, c has only 2
    assert list(tight["a"]) == [0, 4, 7] and list(tight["b"]) == [0, 20, 38]  # spread over the layer's units
    assert all(np.isin(tight[path], units[path]).all() for path in units)
    starved = pictured(Plan(Budget(picture_work=1), units, whole.channels), 1000, 3)
    assert [len(chosen) for chosen in starved.values()] == [1, 1, 1]  # at least one per layer


def test_filters_left_out_by_the_picture_budget_keep_their_tile_and_page_without_extra_images(tiny_context):
    ctx = tiny_context
    ctx.spec.feature_vis = {"steps": 16}
    ctx.spec.budget = {"picture_work": 1}  # one pictured filter per layer
    vis = feature_vis.build(ctx)
    section = units.build(ctx, vis.handoff)
    for layer in vis.data["layers"].values():
        pictured = [r for r in layer["filters"] if r["neuron_activation"] is not None]
        assert len(pictured) == 1 and "neuron" in pictured[0]["images"] and "diversity" in pictured[0]
        for record in layer["filters"]:
            if record["neuron_activation"] is None:
                assert set(record["images"]) == {"feature_vis"} and "diversity" not in record
    assert any("picture_work" in note for note in vis.notes)
    pages = [page for page in section.pages if page.template == "unit.html"]
    assert sum(page.context["neuron"] for page in pages) == 2 and len(pages) > 2
    left_out = next(page for page in pages if not page.context["neuron"])
    assert [view["kind"] for view in left_out.context["views"]] == ["channel"]
    render_page(ctx.out_dir, {"model": {"name": "tiny"}}, section, left_out)
    assert "left out by the budget" in (ctx.out_dir / left_out.path).read_text()


def test_resemblance_lines_up_a_smaller_canvas_with_the_test_images_when_the_field_overhangs_both():
    """A model that takes any size is optimised at FeatVisSettings.max_size (48 px) while its test images are
    64 px; a deep layer's 80-px field is larger than both. The crops are compared in the field's coordinates."""
    from reportgen.methods.resemblance import unit_resemblance
    from reportgen.model import ReceptiveField

    rng = np.random.default_rng(0)
    x = rng.random((12, 64, 64, 1)).astype(np.float32)
    on_canvas = ReceptiveField(jump=(8, 8), start=(-40, -40), size=(80, 80), input_size=(48, 48), output_size=(6, 6))
    on_data = ReceptiveField(jump=(8, 8), start=(-40, -40), size=(80, 80), input_size=(64, 64), output_size=(8, 8))
    # The canvas's central unit (3, 3) sees field pixel i at canvas row -16 + i; the data unit (5, 5) sees it at
    # row i. A neuron image holding test image 0 shifted by 16 px matches that image's crop wherever both exist.
    neuron = x[0, 16:, 16:]
    found = unit_resemblance(neuron, on_canvas, x, on_data, np.array([0]), np.array([[5, 5]]), np.array([1]))
    assert found.top is not None and found.random is not None
    assert found.top == pytest.approx(1.0) and abs(found.random) < 0.2
