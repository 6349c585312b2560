import numpy as np
import pytest
from PIL import Image

from reportgen.util.imaging import PngWriter, near_square, normalize_each, resize_nearest, tile_grid, tile_size


def test_near_square_holds_every_tile_and_is_nearly_square():
    for n in range(1, 200):
        rows, cols = near_square(n)
        assert rows * cols >= n
        assert (rows - 1) * cols < n  # no empty row
        assert abs(rows - cols) <= 1


def test_normalize_each_scales_every_map_on_its_own():
    maps = np.stack([np.arange(9.0).reshape(3, 3), 10 + 5 * np.arange(9.0).reshape(3, 3), np.full((3, 3), 7.0)])
    out = normalize_each(maps)
    assert np.allclose(out[0], out[1])  # same shape of map, different scale: same picture
    assert out[0].min() == 0 and out[0].max() == 1
    assert np.all(out[2] == 0)  # a constant map is blank, not NaN


def test_tile_grid_places_each_tile_row_major():
    tiles = np.stack([np.full((2, 3, 1), i, np.float32) for i in range(5)])
    grid = tile_grid(tiles, cols=3, pad=1, background=-1)
    assert grid.shape == (2 * 3 + 1, 3 * 4 + 1, 1)
    for i in range(5):
        r, c = divmod(i, 3)
        assert np.all(grid[1 + r * 3 : 1 + r * 3 + 2, 1 + c * 4 : 1 + c * 4 + 3] == i)
    assert np.all(grid[4:6, 9:12] == -1)  # the sixth slot stays background


def test_resize_nearest_enlarges_into_blocks():
    image = np.arange(4.0).reshape(1, 2, 2, 1)
    big = resize_nearest(image, 4, 4)
    assert big.shape == (1, 4, 4, 1)
    assert np.all(big[0, :2, :2, 0] == 0) and np.all(big[0, 2:, 2:, 0] == 3)


def test_tile_size_enlarges_small_maps_and_shrinks_big_ones():
    assert tile_size(7, 7) == (42, 42)
    assert max(tile_size(148, 148)) <= 96
    assert tile_size(28, 28) == (28, 28)


def test_a_background_writer_has_written_every_png_when_its_block_ends(tmp_path):
    image = np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4, 1)
    with PngWriter(background=True) as writer:
        for k in range(50):
            writer.save(tmp_path / "img" / f"{k}.png", image)
        image[:] = 0  # the pixels were copied when asked for
    written = np.asarray(Image.open(tmp_path / "img" / "49.png"))
    assert len(list((tmp_path / "img").iterdir())) == 50
    np.testing.assert_array_equal(written, (np.linspace(0, 1, 12) * 255 + 0.5).astype(np.uint8).reshape(3, 4))


def test_a_failed_background_write_raises_when_the_block_ends_unless_the_block_failed(tmp_path):
    (tmp_path / "taken").write_text("a file, not a folder")
    with pytest.raises(OSError), PngWriter(background=True) as writer:
        writer.save(tmp_path / "taken" / "a.png", np.zeros((2, 2)))
    with pytest.raises(KeyError), PngWriter(background=True) as writer:  # the block's own error wins
        writer.save(tmp_path / "taken" / "b.png", np.zeros((2, 2)))
        raise KeyError("the build failed first")
