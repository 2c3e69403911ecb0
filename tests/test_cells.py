"""The `cells` generator and the `seg:DIR` loader: determinism, class content, the happy path and every error."""

import numpy as np
import pytest
import torch
from PIL import Image

import aekit
from aekit.cli import main
from aekit.data import DataConfig, load_data
from aekit.data.cells import generate_cells, instance_masks
from aekit.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny models: one thread is faster


def test_cells_are_deterministic_and_independent_of_the_count():
    a_x, a_y = generate_cells(4, 40, 0.5, seed=3)
    b_x, b_y = generate_cells(4, 40, 0.5, seed=3)
    assert np.array_equal(a_x, b_x) and np.array_equal(a_y, b_y)
    c_x, c_y = generate_cells(2, 40, 0.5, seed=3)  # image i depends on (seed, i) only
    assert np.array_equal(c_x, a_x[:2]) and np.array_equal(c_y, a_y[:2])
    d_x, _ = generate_cells(2, 40, 0.5, seed=3, start=2)
    assert np.array_equal(d_x, a_x[2:])
    e_x, _ = generate_cells(4, 40, 0.5, seed=4)
    assert not np.array_equal(e_x, a_x)


def test_cells_class_content():
    x, y = generate_cells(6, 64, 0.5, borders=False, seed=0)
    assert x.dtype == np.uint8 and y.dtype == np.uint8 and x.shape == y.shape == (6, 64, 64)
    assert set(np.unique(y)) == {0, 1}
    assert 0.1 < (y == 1).mean() < 0.7  # many cells, still mostly background
    assert x[y == 1].mean() > x[y == 0].mean() + 40  # cells are bright
    xb, yb = generate_cells(6, 64, 0.5, borders=True, seed=0)
    assert np.array_equal(xb, x)  # the images do not depend on the mask option
    assert set(np.unique(yb)) == {0, 1, 2}
    assert np.array_equal(yb > 0, y > 0)  # borders are cell pixels where two cells meet
    assert 0 < (yb == 2).mean() < 0.2


def test_cell_borders_separate_touching_instances():
    inst = np.zeros((1, 5, 6), np.int32)
    inst[0, 1:4, 0:3] = 1
    inst[0, 1:4, 3:6] = 2  # two cells touching along a vertical line
    m = instance_masks(inst, borders=True)[0]
    assert (m[1:4, 2:4] == 2).all() and (m[1:4, [0, 1, 4, 5]] == 1).all() and (m[[0, 4]] == 0).all()


def test_difficulty_adds_noise_and_blur():
    from scipy.ndimage import gaussian_filter

    def roughness(d):
        x, _ = generate_cells(3, 64, d, seed=1)
        x = x.astype(float)
        return np.abs(x - gaussian_filter(x, (0, 2, 2))).mean()

    assert roughness(1.0) > 1.5 * roughness(0.0)


def test_cells_dataset():
    data = load_data(DataConfig("cells", cells_count=20, image_size=24, cells_borders=True))
    assert data.segmentation and data.kind == "image" and data.shape == (1, 24, 24)
    assert data.classes == ("background", "cell", "border")
    assert data.train.y.dtype == torch.uint8 and data.train.y.shape == (len(data.train), 24, 24)
    assert len(data.train) + len(data.val) + len(data.test) == 20
    with pytest.raises(ConfigError, match="cells-difficulty"):
        DataConfig("cells", cells_difficulty=1.5)


# ------------------------------------------------------------------------------------------------ seg:DIR


def write_pairs(root, n=10, size=(20, 16), classes=3, rgb=False, seed=0):
    """n image/mask pairs: images correlated with the masks so a model can learn them."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    w, h = size
    masks = []
    for i in range(n):
        m = rng.integers(0, classes, (h, w)).astype(np.uint8)
        m[0, :classes] = np.arange(classes)  # every class occurs
        img = (m * (255 // max(1, classes - 1))).astype(np.uint8)
        if rgb:
            Image.fromarray(np.stack([img] * 3, -1)).save(root / "images" / f"p{i:02d}.jpg", quality=95)
        else:
            Image.fromarray(img).save(root / "images" / f"p{i:02d}.png")
        Image.fromarray(m).save(root / "masks" / f"p{i:02d}.png")
        masks.append(m)
    return np.stack(masks)


def test_seg_dir_happy_path(tmp_path):
    masks = write_pairs(tmp_path / "d")
    data = load_data(DataConfig(f"seg:{tmp_path / 'd'}"))
    assert data.segmentation and data.shape == (1, 16, 20) and data.classes == ("0", "1", "2")
    got = torch.cat([data.train.y, data.val.y, data.test.y]).numpy()
    assert sorted(map(bytes, got)) == sorted(map(bytes, masks))  # every mask, bit for bit
    # RGB JPEG images, resized with their masks
    write_pairs(tmp_path / "rgb", rgb=True, size=(20, 16))
    data = load_data(DataConfig(f"seg:{tmp_path / 'rgb'}", image_size=8))
    assert data.shape == (3, 8, 8) and set(torch.unique(data.train.y).tolist()) <= {0, 1, 2}


def test_seg_dir_trains_and_evaluates(tmp_path):
    write_pairs(tmp_path / "d", n=12, classes=2)
    run = aekit.train("unet", f"seg:{tmp_path / 'd'}", tmp_path / "run", epochs=1, batch_size=4, depth=2,
                      base_channels=4, progress=False, report=False)
    assert run.model.num_classes == 2
    for key in ("miou", "dice", "pixel_accuracy", "boundary_f1", "iou_per_class"):
        assert key in run.evaluation
    assert set(run.evaluation["iou_per_class"]) == {"0", "1"}


def _errors(tmp_path):
    """(name, setup(root), expected message fragment) for every malformed folder."""
    def missing_mask(r):
        (r / "masks" / "p03.png").unlink()

    def missing_image(r):
        (r / "images" / "p03.png").unlink()

    def jpeg_mask(r):
        Image.open(r / "masks" / "p03.png").convert("L").save(r / "masks" / "p03.jpg")
        (r / "masks" / "p03.png").unlink()

    def size_mismatch(r):
        Image.fromarray(np.zeros((17, 20), np.uint8)).save(r / "masks" / "p03.png")

    def rgb_mask(r):
        Image.fromarray(np.zeros((16, 20, 3), np.uint8)).save(r / "masks" / "p03.png")

    def gap(r):
        m = np.zeros((16, 20), np.uint8)
        m[0, 0] = 5
        Image.fromarray(m).save(r / "masks" / "p03.png")

    def binary_255(r):
        for p in (r / "masks").iterdir():
            m = (np.asarray(Image.open(p)) > 0).astype(np.uint8) * 255
            Image.fromarray(m).save(p)

    def sizes_differ(r):
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(r / "images" / "p03.png")
        Image.fromarray(np.zeros((10, 10), np.uint8)).save(r / "masks" / "p03.png")

    def corrupt_image(r):
        (r / "images" / "p03.png").write_bytes(b"not a png")

    def duplicate(r):
        Image.fromarray(np.zeros((16, 20), np.uint8)).save(r / "images" / "p03.jpg")

    def no_masks_dir(r):
        for p in (r / "masks").iterdir():
            p.unlink()
        (r / "masks").rmdir()

    return [
        ("missing mask", missing_mask, r"images/p03.png has no mask: add masks/p03.png"),
        ("missing image", missing_image, r"masks/p03.png has no image: add images/p03.png"),
        ("jpeg mask", jpeg_mask, r"p03.jpg is not a PNG"),
        ("size mismatch", size_mismatch, r"p03.png is 20×17 but its image p03.png is 20×16"),
        ("rgb mask", rgb_mask, r"p03.png is RGB, not single-channel"),
        ("gap", gap, r"ids must be contiguous from 0, and 3 never occurs: renumber the classes to 0..3"),
        ("0/255", binary_255, r"binary masks saved as 0/255: divide them by 255"),
        ("sizes differ", sizes_differ, r"different sizes .* pass --image-size"),
        ("corrupt", corrupt_image, r"cannot read image .*p03.png"),
        ("duplicate", duplicate, r"two images are named 'p03'"),
        ("no masks dir", no_masks_dir, r"has no masks/ folder"),
    ]


def test_seg_dir_every_error_is_one_line(tmp_path):
    for i, (name, setup, pattern) in enumerate(_errors(tmp_path)):
        root = tmp_path / f"case{i}"
        write_pairs(root, n=6, classes=3)
        setup(root)
        with pytest.raises(DataError, match=pattern) as e:
            load_data(DataConfig(f"seg:{root}"))
        assert "\n" not in str(e.value), name
    with pytest.raises(DataError, match="is not a folder"):
        load_data(DataConfig(f"seg:{tmp_path / 'nope'}"))


def test_num_classes_out_of_range_and_unet_needs_masks(tmp_path, capsys):
    write_pairs(tmp_path / "d", n=6, classes=3)
    with pytest.raises(DataError, match=r"class id 2 but --num-classes is 2: pass --num-classes 3"):
        aekit.train("unet", f"seg:{tmp_path / 'd'}", tmp_path / "run", num_classes=2, epochs=1, progress=False)
    assert not (tmp_path / "run").exists()  # no half-written run directory
    with pytest.raises(DataError, match="needs segmentation masks"):
        aekit.train("unet", "digits", tmp_path / "run2", epochs=1, progress=False)
    assert main(["-q", "train", "--model", "unet", "--data", f"seg:{tmp_path / 'd'}", "--num-classes", "2",
                 "--out", str(tmp_path / "run3")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--num-classes 3" in err and "Traceback" not in err
