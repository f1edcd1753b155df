import os

import numpy as np
import pytest

from affectfer.data import ABAWDataset, ArrayDataset, CSVDataset, ImageFolder


def touch(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(b"x")


def test_image_folder(tmp_path):
    for name in ["b/2.png", "b/1.jpg", "a/x.JPEG", "a/sub/y.bmp", "a/notes.txt", "c/.hidden/z.png"]:
        touch(str(tmp_path / name))
    os.makedirs(tmp_path / ".git")
    ds = ImageFolder(str(tmp_path))
    assert ds.classes == ["a", "b", "c"] and ds.class_to_idx["b"] == 1
    # .bmp is not decoded (JPEG and PNG only), so not listed
    assert [os.path.relpath(p, tmp_path) for p in ds.paths] == ["a/x.JPEG", "b/1.jpg", "b/2.png", "c/.hidden/z.png"]
    assert ds.labels.tolist() == [0, 1, 1, 2] and ds.labels.dtype == np.int64 and len(ds) == 4


def test_image_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a directory"):
        ImageFolder(str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="no class"):
        ImageFolder(str(tmp_path))
    touch(str(tmp_path / "a" / "readme.txt"))
    with pytest.raises(ValueError, match="no images"):
        ImageFolder(str(tmp_path))


def test_csv_with_header_and_targets(tmp_path):
    for n in ["i0.png", "d/i1.png"]:
        touch(str(tmp_path / n))
    (tmp_path / "list.csv").write_text("path,label,valence,arousal\ni0.png,2,0.5,-0.25\nd/i1.png,0,0.1,0.2\n\n")
    ds = CSVDataset(str(tmp_path / "list.csv"))
    assert ds.columns == ["path", "label", "valence", "arousal"]
    assert ds.paths == [str(tmp_path / "i0.png"), str(tmp_path / "d/i1.png")]
    assert ds.labels.tolist() == [2, 0] and ds.classes == ["0", "1", "2"]
    assert ds.targets.dtype == np.float32 and np.allclose(ds.targets, [[0.5, -0.25], [0.1, 0.2]])


def test_tsv_without_header_and_root(tmp_path):
    touch(str(tmp_path / "imgs" / "a.jpg"))
    (tmp_path / "l.tsv").write_text("a.jpg\t1\n")
    ds = CSVDataset(str(tmp_path / "l.tsv"), root=str(tmp_path / "imgs"), num_classes=7)
    assert ds.labels.tolist() == [1] and ds.targets is None and ds.num_classes == 7 and ds.columns is None


def test_csv_errors(tmp_path):
    touch(str(tmp_path / "a.png"))
    f = tmp_path / "l.csv"
    with pytest.raises(FileNotFoundError, match="list file"):
        CSVDataset(str(tmp_path / "none.csv"))
    f.write_text("a.png,x\n")
    with pytest.raises(ValueError, match=r"l.csv:1: label 'x'"):
        CSVDataset(str(f), header=False)
    f.write_text("a.png,1\na.png,-1\n")
    with pytest.raises(ValueError, match=r"l.csv:2: label -1 is outside"):
        CSVDataset(str(f))
    f.write_text("a.png,1.5\n")
    with pytest.raises(ValueError, match="not an integer"):
        CSVDataset(str(f))
    f.write_text("missing.png,0\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        CSVDataset(str(f))
    f.write_text("path,label\n")
    with pytest.raises(ValueError, match="no samples"):
        CSVDataset(str(f))
    f.write_text("a.png,0,0.5\na.png,0\n")
    with pytest.raises(ValueError, match="columns"):
        CSVDataset(str(f))


def test_abaw_expression(tmp_path):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    (ann / "vid1.txt").write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n0\n-1\n4\n7\n")
    (ann / "vid2.txt").write_text("Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n3\n")
    for f in ["vid1/00001.jpg", "vid1/00003.jpg", "vid2/00001.jpg"]:  # vid1 frame 4 has no image
        touch(str(img / f))
    ds = ABAWDataset(str(ann), str(img))
    assert ds.classes[0] == "Neutral" and len(ds.classes) == 8
    assert [os.path.relpath(p, img) for p in ds.paths] == ["vid1/00001.jpg", "vid1/00003.jpg", "vid2/00001.jpg"]
    assert ds.labels.tolist() == [0, 4, 3] and ds.num_missing == 1 and ds.videos == ["vid1", "vid1", "vid2"]
    with pytest.raises(FileNotFoundError, match="00004.jpg"):
        ABAWDataset(str(ann), str(img), missing="error")


def test_abaw_va_and_errors(tmp_path):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    (ann / "v.txt").write_text("valence,arousal\n0.5,-0.1\n-5,-5\n0.2,0.3\n")
    for f in ["v/00001.jpg", "v/00002.jpg", "v/00003.jpg"]:
        touch(str(img / f))
    ds = ABAWDataset(str(ann / "v.txt"), str(img), task="va")
    assert np.allclose(ds.targets, [[0.5, -0.1], [0.2, 0.3]]) and ds.labels.tolist() == [-1, -1]
    (ann / "v.txt").write_text("A,B\n5\n")
    with pytest.raises(ValueError, match=r"v.txt:2: label 5 is outside \[0, 2\)"):
        ABAWDataset(str(ann), str(img))
    (ann / "v.txt").write_text("A,B\n-1\n")
    with pytest.raises(ValueError, match="no annotated frames"):
        ABAWDataset(str(ann), str(img))
    with pytest.raises(FileNotFoundError):
        ABAWDataset(str(tmp_path / "nope"), str(img))
    with pytest.raises(ValueError, match="task"):
        ABAWDataset(str(ann), str(img), task="x")


def test_array_dataset(rng):
    imgs = rng.integers(0, 256, (4, 5, 6, 3), dtype=np.uint8)
    ds = ArrayDataset(imgs, [0, 1, 2, 1], targets=np.zeros((4, 2)))
    image, label, t = ds[1]
    assert np.array_equal(image, imgs[1]) and label == 1 and t.shape == (2,) and ds.num_classes == 3
    assert ArrayDataset(imgs[..., 0], [0, 0, 0, 0]).images.shape == (4, 5, 6, 1)
    with pytest.raises(TypeError, match="uint8"):
        ArrayDataset(imgs.astype(np.float32), [0] * 4)
    with pytest.raises(ValueError, match="labels"):
        ArrayDataset(imgs, [0, 1])
    with pytest.raises(ValueError, match="empty"):
        ArrayDataset(imgs[:0], [])
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        ArrayDataset(np.zeros((2, 3, 3, 2), np.uint8), [0, 0])
    with pytest.raises(IndexError):
        ds[4]
