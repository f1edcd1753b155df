"""affectfer.data.readers (ABAW4 MTL, AffectNet, ExpW), face-box crops (loader and ds[i] against NumPy
slicing), label remapping between the datasets' class orders, ConcatDataset; ABAWDataset(task="au")."""
import os

import numpy as np
import pytest

from affectfer.data import (ABAWDataset, ABAWMTLDataset, AffectNetDataset, ArrayDataset, ConcatDataset, CSVDataset,
                            ExpWDataset, Loader, PackedDataset, crop_to_box, mtl_targets, pack, remap_labels,
                            remap_table)
from affectfer.data.datasets import FULL_IMAGE

from tests.images import write_png

MTL_HEADER = "image,valence,arousal,expression,AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26"


def images_at(root, names, rng, size=(20, 24)):
    """Random RGB PNGs at root/name; returns {name: pixels}."""
    out = {}
    for name in names:
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        out[name] = rng.integers(0, 256, (*size, 3), dtype=np.uint8)
        write_png(path, out[name])
    return out


def batches(ds, batch_size=1):
    return [tuple(np.asarray(t).copy() for t in b) for b in Loader(ds, batch_size=batch_size, workers=2, seed=0)]


def loaded(ds, i):
    """Sample i as the loader's workers deliver it (ToTensor only), back to uint8 HWC, and its label."""
    x, y = next(iter(Loader(ds, batch_size=1, sampler=[i], workers=1, seed=0)))[:2]
    return np.rint(np.asarray(x)[0].transpose(1, 2, 0) * 255).astype(np.uint8), int(np.asarray(y)[0])


# ---- ABAW4 multi-task list ----

def test_abaw_mtl_targets_and_masks(tmp_path, rng):
    images_at(tmp_path / "img", ["v1/00001.jpg", "v1/00002.jpg", "v2/00001.jpg", "v2/00004.jpg"], rng)
    (tmp_path / "mtl.txt").write_text("\n".join([
        MTL_HEADER,
        "v1/00001.jpg,0.25,-0.5,4,0,1,0,0,0,0,1,0,0,0,1,0",
        "v1/00002.jpg,-5,-5,-1,1,1,1,1,1,1,1,1,1,1,1,1",       # AUs only
        "v1/00003.jpg,0.1,0.1,2,0,0,0,0,0,0,0,0,0,0,0,0",      # no image: skipped
        "v2/00001.jpg,-5,-5,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1",  # nothing annotated: left out
        "v2/00004.jpg,0.5,-5,7,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1,-1",
        ""]))
    ds = ABAWMTLDataset(str(tmp_path / "mtl.txt"), str(tmp_path / "img"))
    assert [os.path.relpath(p, tmp_path / "img") for p in ds.paths] == ["v1/00001.jpg", "v1/00002.jpg", "v2/00004.jpg"]
    assert ds.num_missing == 1 and ds.num_unannotated == 1 and ds.classes[7] == "other"
    assert ds.expression.tolist() == [4, -1, 7] and ds.expression_mask.tolist() == [True, False, True]
    np.testing.assert_array_equal(ds.va, [[0.25, -0.5], [-5, -5], [0.5, -5]])
    assert ds.va_mask.tolist() == [[True, True], [False, False], [True, False]]
    assert ds.au.dtype == np.int64 and ds.au.shape == (3, 12)
    assert ds.au[0].tolist() == [0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0] and ds.au[1].tolist() == [1] * 12
    assert ds.au_mask.all(1).tolist() == [True, True, False]
    # a loader batch carries the invalid markers, so mtl_targets recovers the same masks
    _, labels, targets = batches(ds, batch_size=3)[0]
    split = mtl_targets(labels, targets)
    for name in ("expression", "va", "au", "expression_mask", "va_mask", "au_mask"):
        np.testing.assert_array_equal(split[name], getattr(ds, name), err_msg=name)
    with pytest.raises(FileNotFoundError, match="00003.jpg"):
        ABAWMTLDataset(str(tmp_path / "mtl.txt"), str(tmp_path / "img"), missing="error")


@pytest.mark.parametrize("line, message", [
    ("v/1.jpg,0.1,0.2,3,0,0,0", r"mtl.txt:3: 7 columns, the header has 16"),
    ("v/1.jpg,0.1,x,3,0,0,0,0,0,0,0,0,0,0,0,0", r"mtl.txt:3: arousal 'x' is not a number"),
    ("v/1.jpg,1.5,0.2,3,0,0,0,0,0,0,0,0,0,0,0,0", r"mtl.txt:3: valence 1.5 is outside \[-1, 1\]"),
    ("v/1.jpg,0.1,0.2,8,0,0,0,0,0,0,0,0,0,0,0,0", r"mtl.txt:3: expression 8 is outside \[0, 8\)"),
    ("v/1.jpg,0.1,0.2,3,0,0,2,0,0,0,0,0,0,0,0,0", r"mtl.txt:3: AU4 is '2'"),
])
def test_abaw_mtl_malformed_lines_name_file_and_line(tmp_path, line, message):
    (tmp_path / "mtl.txt").write_text(f"{MTL_HEADER}\nv/1.jpg,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0\n{line}\n")
    with pytest.raises(ValueError, match=message):
        ABAWMTLDataset(str(tmp_path / "mtl.txt"), str(tmp_path), check_files=False)


def test_abaw_mtl_header_and_options(tmp_path):
    (tmp_path / "mtl.txt").write_text("image,valence,arousal,expression\n")
    with pytest.raises(ValueError, match=r"mtl.txt:1: expected the header"):
        ABAWMTLDataset(str(tmp_path / "mtl.txt"), str(tmp_path))
    with pytest.raises(FileNotFoundError, match="image root"):
        ABAWMTLDataset(str(tmp_path / "mtl.txt"), str(tmp_path / "none"))
    with pytest.raises(ValueError, match="missing must be"):
        ABAWMTLDataset(str(tmp_path / "mtl.txt"), str(tmp_path), missing="ignore")
    with pytest.raises(ValueError, match=r"expected labels \(B,\) and targets \(B, 14\)"):
        mtl_targets(np.zeros(2), np.zeros((2, 3)))


def test_abaw_au_task(tmp_path):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    (ann / "v.txt").write_text("AU1,AU2,AU4\n1,0,1\n-1,-1,-1\n0,0,1\n0,1\n")
    for f in ["v/00001.jpg", "v/00002.jpg", "v/00003.jpg"]:
        os.makedirs(img / "v", exist_ok=True)
        (img / f).write_bytes(b"x")
    with pytest.raises(ValueError, match=r"v.txt:5: 2 values, the header has 3"):
        ABAWDataset(str(ann), str(img), task="au")
    (ann / "v.txt").write_text("AU1,AU2,AU4\n1,0,1\n-1,-1,-1\n0,0,1\n")
    ds = ABAWDataset(str(ann), str(img), task="au")
    assert ds.classes == ["AU1", "AU2", "AU4"] and ds.labels.tolist() == [-1, -1]
    np.testing.assert_array_equal(ds.targets, [[1, 0, 1], [0, 0, 1]])  # the -1 frame is unannotated: skipped
    assert [os.path.basename(p) for p in ds.paths] == ["00001.jpg", "00003.jpg"]


def test_abaw_expression_remapped_keeps_its_videos(tmp_path):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    header = "Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other\n"
    (ann / "a.txt").write_text(header + "7\n4\n")
    (ann / "b.txt").write_text(header + "1\n")
    for f in ["a/00001.jpg", "a/00002.jpg", "b/00001.jpg"]:
        os.makedirs(img / f.split("/")[0], exist_ok=True)
        (img / f).write_bytes(b"x")
    ds = remap_labels(ABAWDataset(str(ann), str(img)), "abaw", "fer2013")     # "other" has no FER2013 class
    assert ds.labels.tolist() == [3, 0] and ds.videos == ["a", "b"] and ds.classes[3] == "happy"


# ---- AffectNet ----

def affectnet_row(path, box, label, va=(0.5, -0.25), landmarks=None):
    x, y, w, h = box
    landmarks = np.arange(136, dtype=float) / 4 + 10 if landmarks is None else landmarks
    return f'{path},{x},{y},{w},{h},"{";".join(f"{v:g}" for v in landmarks)}",{label},{va[0]},{va[1]}'


def test_affectnet_targets_boxes_and_classes(tmp_path, rng):
    pix = images_at(tmp_path / "img", ["1/a.jpg", "1/b.png", "2/c.jpg", "2/d.jpg"], rng, size=(30, 40))
    header = "subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal"
    rows = [affectnet_row("1/a.jpg", (3, 4, 10, 12), 1), affectnet_row("1/b.png", (0, 0, 40, 30), 7, va=(-0.1, 0.2)),
            affectnet_row("2/c.jpg", (5, 5, 5, 5), 10, va=(-2, -2)), affectnet_row("2/d.jpg", (1, 2, 3, 4), 6)]
    (tmp_path / "training.csv").write_text("\n".join([header] + rows) + "\n")
    ds = AffectNetDataset(str(tmp_path / "training.csv"), str(tmp_path / "img"))
    assert ds.classes == ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger", "contempt"]
    assert ds.labels.tolist() == [1, 7, 6] and ds.num_dropped == 1      # the no-face row is left out
    assert ds.targets.shape == (3, 138) and ds.landmarks.shape == (3, 68, 2)
    np.testing.assert_array_equal(ds.va, np.float32([[0.5, -0.25], [-0.1, 0.2], [0.5, -0.25]]))
    np.testing.assert_array_equal(ds.boxes, [[3, 4, 13, 16], [0, 0, 40, 30], [1, 2, 4, 6]])
    raw = (np.arange(136) / 4 + 10).reshape(68, 2)
    np.testing.assert_allclose(ds.landmarks[0], raw - [3, 4])            # in the crop's coordinates
    np.testing.assert_array_equal(ds[0][0], pix["1/a.jpg"][4:16, 3:13])
    # no header (the released validation.csv), 7 classes, no crop, unlabeled kept as -1
    (tmp_path / "validation.csv").write_text("\n".join(rows) + "\n")
    ds7 = AffectNetDataset(str(tmp_path / "validation.csv"), str(tmp_path / "img"), num_classes=7, crop=False,
                           keep_unlabeled=True)
    assert ds7.labels.tolist() == [1, -1, -1, 6] and ds7.boxes is None and len(ds7.classes) == 7
    assert ds7.va_mask.tolist() == [True, True, False, True]
    np.testing.assert_allclose(ds7.landmarks[0], raw)
    np.testing.assert_array_equal(ds7[1][0], pix["1/b.png"])


@pytest.mark.parametrize("row, message", [
    ('1/a.jpg,3,4,10,12,"1;2;3",1,0.5,0.5', r"a.csv:2: facial_landmarks holds 3 numbers, expected 136"),
    ("1/a.jpg,3,4,10,12,1", r"a.csv:2: 6 columns, expected 9"),
    (None, r"a.csv:2: degenerate face box \(left 3, top 4, right 3, bottom 16\)"),
    (affectnet_row("1/a.jpg", (3, 4, 10, 12), 11), r"a.csv:2: expression 11 is outside"),
    (affectnet_row("1/a.jpg", (3, 4, 10, 12), 1, va=(0.5, 3)), r"a.csv:2: arousal 3.0 is outside \[-1, 1\]"),
])
def test_affectnet_malformed_lines_name_file_and_line(tmp_path, row, message):
    row = row or affectnet_row("1/a.jpg", (3, 4, 0, 12), 1)
    (tmp_path / "a.csv").write_text(affectnet_row("1/z.jpg", (0, 0, 4, 4), 0) + "\n" + row + "\n")
    with pytest.raises(ValueError, match=message):
        AffectNetDataset(str(tmp_path / "a.csv"), str(tmp_path), check_files=False)


# ---- ExpW ----

def test_expw_faces_are_separate_samples(tmp_path, rng):
    pix = images_at(tmp_path / "origin", ["party.jpg", "solo.png"], rng, size=(32, 48))
    (tmp_path / "label.lst").write_text(
        "party.jpg 0 2 5 17 12 80.5 3\n"
        "party.jpg 1 10 20 30 28 35.0 6\n"
        "solo.png 0 0 0 48 32 99.0 0\n"
        "gone.jpg 0 0 0 8 8 99.0 1\n")
    ds = ExpWDataset(str(tmp_path / "label.lst"), str(tmp_path / "origin"))
    assert ds.classes == ["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"]
    assert ds.labels.tolist() == [3, 6, 0] and ds.face_ids.tolist() == [0, 1, 0] and ds.num_missing == 1
    np.testing.assert_array_equal(ds.boxes, [[5, 2, 17, 12], [20, 10, 30, 28], [0, 0, 48, 32]])
    np.testing.assert_allclose(ds.confidence, [80.5, 35.0, 99.0])
    for i, (name, (t, b, l, r)) in enumerate([("party.jpg", (2, 12, 5, 17)), ("party.jpg", (10, 28, 20, 30)),
                                               ("solo.png", (0, 32, 0, 48))]):
        expected = pix[name][t:b, l:r]
        np.testing.assert_array_equal(ds[i][0], expected)
        image, label = loaded(ds, i)
        np.testing.assert_array_equal(image, expected)
        assert label == ds.labels[i]
    sure = ExpWDataset(str(tmp_path / "label.lst"), str(tmp_path / "origin"), min_confidence=50, crop=False)
    assert sure.labels.tolist() == [3, 0] and sure.num_dropped == 1 and sure.boxes is None
    assert sure.face_boxes.tolist() == [[5, 2, 17, 12], [0, 0, 48, 32]]


@pytest.mark.parametrize("line, message", [
    ("a.jpg 0 1 2 3", r"label.lst:2: 5 fields, expected 8"),
    ("a.jpg 0 1 2 x 9 50 1", r"label.lst:2: face_box_right 'x' is not a number"),
    ("a.jpg 0 1 2 30 9 50 7", r"label.lst:2: expression_label 7 is outside \[0, 7\)"),
    ("a.jpg 0 9 2 30 9 50 1", r"label.lst:2: degenerate face box \(left 2, top 9, right 30, bottom 9\)"),
])
def test_expw_malformed_lines_name_file_and_line(tmp_path, line, message):
    (tmp_path / "label.lst").write_text(f"b.jpg 0 0 0 4 4 90 1\n{line}\n")
    with pytest.raises(ValueError, match=message):
        ExpWDataset(str(tmp_path / "label.lst"), str(tmp_path), check_files=False)


# ---- box crops ----

def test_box_crop_is_numpy_slicing_with_clamping(tmp_path, rng):
    pix = images_at(tmp_path, ["a.png"], rng, size=(30, 40))["a.png"]
    boxes = [(5, 3, 25, 13), (-7, -4, 13, 6), (30, 20, 55, 40), (0, 0, FULL_IMAGE, FULL_IMAGE)]  # left, top, right, bottom
    lines = ["path,label,x0,y0,x1,y1,valence"] + [f"a.png,0,{l},{t},{r},{b},0.5" for l, t, r, b in boxes]
    (tmp_path / "l.csv").write_text("\n".join(lines) + "\n")
    ds = CSVDataset(str(tmp_path / "l.csv"), box_columns=("x0", "y0", "x1", "y1"))
    assert ds.targets.shape == (4, 1) and ds.target_names == ["valence"]   # the box columns are not targets
    np.testing.assert_array_equal(ds.boxes, boxes)
    for i, (l, t, r, b) in enumerate(boxes):
        expected = pix[max(t, 0):min(b, 30), max(l, 0):min(r, 40)]
        np.testing.assert_array_equal(crop_to_box(pix, boxes[i]), expected)
        np.testing.assert_array_equal(ds[i][0], expected)
        np.testing.assert_array_equal(loaded(ds, i)[0], expected)
    # x, y, width, height columns give the same boxes
    lines = ["path,label,x,y,w,h"] + [f"a.png,0,{l},{t},{r - l},{b - t}" for l, t, r, b in boxes[:3]]
    (tmp_path / "w.csv").write_text("\n".join(lines) + "\n")
    xywh = CSVDataset(str(tmp_path / "w.csv"), box_columns=("x", "y", "w", "h"), box_format="xywh")
    np.testing.assert_array_equal(xywh.boxes, boxes[:3]) and xywh.targets is None


def test_box_errors(tmp_path, rng):
    pix = images_at(tmp_path, ["a.png"], rng, size=(30, 40))["a.png"]
    f = tmp_path / "l.csv"
    f.write_text("path,label,x0,y0,x1,y1\na.png,0,0,0,10,10\na.png,0,5,5,5,9\n")
    with pytest.raises(ValueError, match=r"l.csv:3: degenerate face box \(left 5, top 5, right 5, bottom 9\)"):
        CSVDataset(str(f), box_columns=("x0", "y0", "x1", "y1"))
    with pytest.raises(ValueError, match=r"box columns \['x2'\] are not in the header"):
        CSVDataset(str(f), box_columns=("x0", "y0", "x1", "x2"))
    with pytest.raises(ValueError, match="box_format"):
        CSVDataset(str(f), box_columns=("x0", "y0", "x1", "y1"), box_format="cxcywh")
    # a box that lies outside the image is empty once clamped: an error naming the file, not the whole image
    f.write_text("path,label,x0,y0,x1,y1\na.png,0,0,0,10,10\na.png,0,45,0,60,10\n")
    ds = CSVDataset(str(f), box_columns=("x0", "y0", "x1", "y1"))
    with pytest.raises(ValueError, match=r"a.png.*face box \(left 45, top 0, right 60, bottom 10\) is empty inside the "
                                         r"40x30 \(WxH\) image"):
        ds[1]
    with pytest.raises(ValueError, match=r"a.png: face box \(left 45, top 0, right 60, bottom 10\) is empty inside the "
                                         r"40x30 \(WxH\) image"):
        batches(ds)
    with pytest.raises(ValueError, match="pack: CSVDataset has face boxes"):
        pack(ds, tmp_path / "x.afpack", progress=False)
    ds.boxes = None
    packed = PackedDataset(pack(ds, tmp_path / "x.afpack", progress=False))
    with pytest.raises(TypeError, match="PackedDataset is a pack; subset or remap the source dataset"):
        remap_labels(packed, ["a"], ["a"])
    arrays = ArrayDataset(pix[None].repeat(2, 0), [0, 1])
    arrays.boxes = np.array([[1, 2, 11, 12], [0, 0, 10, 10]])     # in-memory images are cropped alike
    np.testing.assert_array_equal(np.rint(batches(arrays, 2)[0][0][0].transpose(1, 2, 0) * 255), pix[2:12, 1:11])
    arrays.boxes = np.zeros((2, 3), np.int64)
    with pytest.raises(ValueError, match=r"'boxes' must be \(2, 4\)"):
        batches(arrays)


# ---- class orders ----

def test_remap_tables_hand_checked():
    # AffectNet (neutral, happy, sad, surprise, fear, disgust, anger, contempt) -> ExpW/FER2013
    # (angry, disgust, fear, happy, sad, surprise, neutral); contempt has no counterpart
    assert remap_table("affectnet", "expw").tolist() == [6, 3, 4, 5, 2, 1, 0, -1]
    assert remap_table("affectnet", "fer2013").tolist() == [6, 3, 4, 5, 2, 1, 0, -1]
    # -> ABAW (neutral, anger, disgust, fear, happiness, sadness, surprise, other): contempt to "other"
    assert remap_table("affectnet", "abaw", missing=7).tolist() == [0, 4, 5, 6, 3, 2, 1, 7]
    assert remap_table("expw", "abaw").tolist() == [1, 2, 3, 4, 5, 6, 0]
    assert remap_table("abaw", "affectnet").tolist() == [0, 6, 5, 4, 1, 2, 3, -1]
    assert remap_table("abaw", "affwild2").tolist() == list(range(8))
    # FER2013 as an image folder (sorted folder names) -> the challenge's order
    folders = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert remap_table(folders, "fer2013").tolist() == [0, 1, 2, 3, 6, 4, 5]
    assert remap_table(folders, ["anger", "disgust", "fear", "happiness", "sadness", "surprise"]).tolist() == \
        [0, 1, 2, 3, -1, 4, 5]
    with pytest.raises(ValueError, match="unknown from order 'raf'"):
        remap_table("raf", "expw")
    with pytest.raises(ValueError, match=r"missing must be 'drop' or a class index in \[0, 7\)"):
        remap_table("affectnet", "expw", missing=7)
    with pytest.raises(ValueError, match="names an emotion twice"):
        remap_table(["angry", "anger"], "expw")


def test_remap_labels_drops_and_keeps_samples_in_step(rng):
    images = rng.integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    ds = ArrayDataset(images, [7, 0, 1, 6, -1, 7], targets=np.arange(12).reshape(6, 2), classes=[str(k) for k in range(8)])
    ds.boxes = np.arange(24).reshape(6, 4) * [1, 1, 2, 2] + [0, 0, 1, 1]
    out = remap_labels(ds, "affectnet", "expw")            # contempt (7) dropped, unannotated kept
    assert out.labels.tolist() == [6, 3, 0, -1] and out.classes == ["angry", "disgust", "fear", "happy", "sad",
                                                                   "surprise", "neutral"]
    np.testing.assert_array_equal(out.images, images[[1, 2, 3, 4]])
    np.testing.assert_array_equal(out.targets, ds.targets[[1, 2, 3, 4]])
    np.testing.assert_array_equal(out.boxes, ds.boxes[[1, 2, 3, 4]])
    other = remap_labels(ds, "affectnet", "abaw", missing=7)
    assert other.labels.tolist() == [7, 0, 4, 1, -1, 7] and len(ds) == 6  # the source is untouched
    with pytest.raises(ValueError, match="outside the from order's 7 classes"):
        remap_labels(ds, "expw", "affectnet")
    with pytest.raises(ValueError, match="every sample belongs to a dropped class"):
        remap_labels(ArrayDataset(images[:1], [7], classes=list("abcdefgh")), "affectnet", "expw")


def test_remap_keeps_a_reader_usable(tmp_path, rng):
    images_at(tmp_path / "o", ["p.jpg"], rng, size=(32, 48))
    (tmp_path / "label.lst").write_text("p.jpg 0 2 5 17 12 80 3\np.jpg 1 10 20 30 28 35 6\np.jpg 2 0 0 9 9 5 5\n")
    ds = remap_labels(ExpWDataset(str(tmp_path / "label.lst"), str(tmp_path / "o")), "expw", "abaw")
    assert ds.labels.tolist() == [4, 0, 6] and ds.face_ids.tolist() == [0, 1, 2] and ds.classes[4] == "happiness"
    six = remap_labels(ds, "abaw", ["anger", "disgust", "fear", "happiness", "sadness", "surprise"])
    assert six.labels.tolist() == [3, 5] and six.face_ids.tolist() == [0, 2] and six.confidence.tolist() == [80, 5]
    assert six.boxes.tolist() == [[5, 2, 17, 12], [0, 0, 9, 9]]


# ---- ConcatDataset ----

def test_concat_indexing_and_loader(tmp_path, rng):
    a = ArrayDataset(rng.integers(0, 256, (3, 6, 6, 3), dtype=np.uint8), [0, 1, 2], targets=np.ones((3, 2)))
    b = ArrayDataset(rng.integers(0, 256, (2, 6, 6, 3), dtype=np.uint8), [2, 2], targets=np.zeros((2, 2)),
                     classes=["0", "1", "2"])
    cat = ConcatDataset([a, b, a])
    assert len(cat) == 8 and cat.offsets.tolist() == [0, 3, 5, 8] and cat.labels.tolist() == [0, 1, 2, 2, 2, 0, 1, 2]
    for i, (k, j) in enumerate([(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0), (2, 1), (2, 2)]):
        assert cat.locate(i) == (k, j) and cat.locate(i - 8) == (k, j)
        image, label, target = cat[i]
        part = cat.datasets[k][j]
        np.testing.assert_array_equal(image, part[0])
        assert label == part[1] and np.array_equal(target, part[2])
    with pytest.raises(IndexError):
        cat.locate(8)
    picked = remap_labels(cat, cat.classes, ["2", "0"])      # class 1 dropped: the record follows the samples
    assert picked.labels.tolist() == [1, 0, 0, 0, 1, 0] and [picked.locate(i) for i in range(6)] == \
        [(0, 0), (0, 2), (1, 0), (1, 1), (2, 0), (2, 2)]
    x, y, t = batches(cat, batch_size=8)[0]
    np.testing.assert_array_equal(np.rint(x.transpose(0, 2, 3, 1) * 255), cat.images)
    assert y.tolist() == cat.labels.tolist() and t[:, 0].tolist() == [1, 1, 1, 0, 0, 1, 1, 1]


def test_concat_files_with_and_without_boxes(tmp_path, rng):
    pix = images_at(tmp_path, ["a.png", "b.png"], rng, size=(10, 10))
    (tmp_path / "boxed.csv").write_text("path,label,l,t,r,b\na.png,1,2,3,6,9\n")
    (tmp_path / "plain.csv").write_text("path,label\nb.png,0\n")
    boxed = CSVDataset(str(tmp_path / "boxed.csv"), box_columns=("l", "t", "r", "b"), num_classes=2)
    plain = CSVDataset(str(tmp_path / "plain.csv"), num_classes=2)
    cat = ConcatDataset([boxed, plain])
    assert cat.paths == boxed.paths + plain.paths and cat.boxes[1].tolist() == [0, 0, FULL_IMAGE, FULL_IMAGE]
    np.testing.assert_array_equal(cat[0][0], pix["a.png"][3:9, 2:6])
    np.testing.assert_array_equal(cat[1][0], pix["b.png"])                  # whole image
    np.testing.assert_array_equal(loaded(cat, 0)[0], pix["a.png"][3:9, 2:6])
    np.testing.assert_array_equal(loaded(cat, 1)[0], pix["b.png"])


def test_concat_refuses_what_the_loader_cannot_read(tmp_path, rng):
    img = rng.integers(0, 256, (2, 4, 4, 3), dtype=np.uint8)
    seven = ArrayDataset(img, [0, 1], classes=["angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"])
    abaw = ArrayDataset(img, [0, 1], classes=["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise"])
    with pytest.raises(ValueError, match="bring them to one order with remap_labels"):
        ConcatDataset([seven, abaw])
    assert len(ConcatDataset([seven, remap_labels(abaw, abaw.classes, "fer2013")])) == 4  # anger == angry
    with pytest.raises(ValueError, match="targets differ in width"):
        ConcatDataset([seven, ArrayDataset(img, [0, 1], targets=np.zeros((2, 1)), classes=seven.classes)])
    with pytest.raises(ValueError, match="different image shapes"):
        ConcatDataset([seven, ArrayDataset(img[:, :3], [0, 1], classes=seven.classes)])
    images_at(tmp_path, ["a.png"], rng)
    (tmp_path / "l.csv").write_text("a.png,0\n")
    files = CSVDataset(str(tmp_path / "l.csv"), classes=seven.classes)
    with pytest.raises(TypeError, match="mixes file datasets"):
        ConcatDataset([seven, files])
    with pytest.raises(ValueError, match="no datasets"):
        ConcatDataset([])
