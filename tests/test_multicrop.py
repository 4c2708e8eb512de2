import pytest
import torch
from helpers import make_image, photo

from data.multicrop import (
    DECODED,
    EvalTransform,
    EvalViews,
    Geometry,
    View,
    cut_on_device,
    cut_views,
    paper_scales,
    views,
)


def five(x0, y0, side, size=224):
    d = side - size
    return [(x0, y0), (x0 + d, y0), (x0, y0 + d), (x0 + d, y0 + d), (x0 + round(d / 2), y0 + round(d / 2))]


def test_144_crops_landscape_are_the_papers_boxes():
    vs = views(400, 300, 144, 224, 256)
    assert len(vs) == 144 and sum(v.flip for v in vs) == 72
    # shorter side 256 -> 341 x 256; squares at x = 0, 42 (centre), 85 (right)
    expected_256 = []
    for x0 in (0, 42, 85):
        square = [View(256, x, y, 224) for x, y in five(x0, 0, 256)] + [View(256, x0, 0, 256)]
        expected_256 += square + [View(v.scale, v.left, v.top, v.side, True) for v in square]
    assert vs[:36] == expected_256
    # per scale: the three squares of the long side, the 5 crops inside each, and the whole square
    for k, (scale, width) in enumerate(zip((256, 288, 320, 352), (341, 384, 427, 469))):
        block = vs[36 * k: 36 * (k + 1)]
        assert {v.scale for v in block} == {scale}
        squares = [v for v in block if v.side == scale and not v.flip]
        assert [(v.left, v.top) for v in squares] == [(0, 0), (round((width - scale) / 2), 0), (width - scale, 0)]
        for v in block:
            assert 0 <= v.left and v.left + v.side <= width and 0 <= v.top and v.top + v.side <= scale
        for i, (sx, _) in enumerate((v.left, v.top) for v in squares):
            assert [(v.left, v.top) for v in block[12 * i: 12 * i + 5]] == five(sx, 0, scale)


def test_144_crops_portrait_use_top_centre_bottom_squares():
    vs = views(300, 400, 144, 224, 256)
    squares = [(v.scale, v.left, v.top) for v in vs if v.side == v.scale and not v.flip]
    assert squares == [(256, 0, 0), (256, 0, 42), (256, 0, 85), (288, 0, 0), (288, 0, 48), (288, 0, 96),
                       (320, 0, 0), (320, 0, 54), (320, 0, 107), (352, 0, 0), (352, 0, 58), (352, 0, 117)]
    assert [(v.left, v.top) for v in vs[:5]] == five(0, 0, 256)
    assert paper_scales(299) == (342, 384, 427, 470)


def test_10_and_1_crop_boxes():
    vs = views(400, 300, 10, 224, 256)  # resized to 341 x 256
    assert [(v.left, v.top) for v in vs[:5]] == [(0, 0), (117, 0), (0, 32), (117, 32), (58, 16)]
    assert [v.flip for v in vs] == [False] * 5 + [True] * 5
    assert [(v.left, v.top) for v in vs[5:]] == [(v.left, v.top) for v in vs[:5]]
    assert views(400, 300, 1, 224, 256) == [View(256, 58, 16, 224)]
    with pytest.raises(ValueError):
        views(400, 300, 12, 224, 256)


def test_crops_are_input_sized_and_mirrors_are_flips(tmp_path):
    image = torch.randint(0, 256, (3, 150, 200), dtype=torch.uint8)
    vs = views(200, 150, 144, 64, 73)
    crops = cut_views(image, vs, 64)
    assert crops.shape == (144, 3, 64, 64)
    for start in range(0, 144, 12):  # each square: 6 views then their 6 mirrors
        assert torch.equal(crops[start + 6: start + 12], crops[start: start + 6].flip(-1))
    # a corner crop is the pixels of the resized image at that box
    resized = torch.nn.functional.interpolate(image[None].float(), size=(paper_scales(64)[0], 97),
                                              mode="bilinear", antialias=True).round().clamp(0, 255).byte()[0]
    assert torch.equal(crops[0], resized[:, :64, :64])
    path = make_image(tmp_path / "x.JPEG", size=(120, 90))
    small, large = Geometry(48, 55), Geometry(64, 73)
    every = EvalViews([small, large], (1, 10, 144))(path)  # one decode for two model sizes and three modes
    for n in (1, 10, 144):
        alone = EvalViews([small, large], (n,))(path)
        for g in (small, large):
            assert every[(g, n)].shape == (n, 3, g.size, g.size)
            assert torch.equal(every[(g, n)], alone[(g, n)])  # a view does not depend on the other modes
    assert torch.equal(EvalTransform(48, 55)(path), EvalViews([small], (1,))(path)[(small, 1)][0])


def test_absurdly_elongated_images_are_unreadable_for_multi_crop_views_only(tmp_path):
    from data.imaging import UnreadableImage
    g = Geometry(64, 73)
    strip = make_image(tmp_path / "strip.png", size=(6000, 2), fmt="PNG")  # 3000:1; 144 crops would need ~1 GB
    with pytest.raises(UnreadableImage, match=r"aspect ratio \(6000 x 2\) is beyond 20:1"):
        EvalViews([g], (1, 144))(strip)
    assert EvalViews([g], (1,))(strip)[(g, 1)].shape == (1, 3, 64, 64)  # the centre crop resamples a small box
    wide = make_image(tmp_path / "wide.png", size=(400, 20), fmt="PNG")  # 20:1 still works
    assert EvalViews([g], (10,))(wide)[(g, 10)].shape == (10, 3, 64, 64)


def test_views_cut_on_the_device_are_the_workers_views(tmp_path):
    # a GPU evaluation uploads each decoded image once and cuts its 10 and 144 views there: the same views
    path = photo(tmp_path / "p.JPEG", size=(200, 150))
    geometries, modes = [Geometry(64, 73), Geometry(75, 86)], (1, 10, 144)
    cut = EvalViews(geometries, modes)(path)
    later = EvalViews(geometries, modes, cut_later=True)(path)
    assert set(later) == {(g, 1) for g in geometries} | {DECODED}
    for g in geometries:
        assert torch.equal(later[(g, 1)], cut[(g, 1)])
        for mode in (10, 144):
            assert torch.equal(cut_on_device([later[DECODED]], g, mode)[0], cut[(g, mode)])
