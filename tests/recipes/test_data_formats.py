"""`train --data PATH` with the readers' list files: recipes._common.load_data recognises an ABAW4 MTL
annotation file, an AffectNet CSV and an ExpW label.lst (besides image folders and plain CSV lists)
and finds their images in each dataset's usual folder beside the list."""
import numpy as np
import pytest

from affectfer.data.readers import ABAW_AUS
from affectfer.datasets import synthetic_faces
from affectfer.recipes import _common as C
from tests.images import write_png

SENET = ("neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise")
ABAW = SENET + ("other",)


def _faces(folder, names, size=40, seed=3):
    folder.mkdir(parents=True, exist_ok=True)
    faces = synthetic_faces(len(names), size, seed=seed)
    for name, image in zip(names, faces.images):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_png(str(folder / name), image)
    return faces


def test_an_abaw4_mtl_list_is_read_with_its_masks(tmp_path):
    names = [f"v1/{i:05d}.png" for i in range(1, 9)]
    _faces(tmp_path / "cropped_aligned", names)
    rows = [",".join(["image", "valence", "arousal", "expression", *ABAW_AUS])]
    expressions = [4, 5, -1, 1, 4, 7, 3, 6]
    for i, (name, e) in enumerate(zip(names, expressions)):
        va = "-5,-5" if i == 1 else f"{0.1 * i:.1f},-0.2"
        aus = ",".join(["-1"] * 12 if i == 3 else [str((i + k) % 2) for k in range(12)])
        rows.append(f"{name},{va},{e},{aus}")
    listing = tmp_path / "training_set_annotations.txt"
    listing.write_text("\n".join(rows) + "\n")
    assert C.list_format(str(listing)) == "abaw_mtl"
    data = C.load_data((str(listing), str(listing)), ABAW)
    np.testing.assert_array_equal(data.train.labels, expressions)
    assert data.train.targets.shape == (8, 14) and data.train.targets[1, 0] == -5 and data.train.targets[3, 2] == -1
    assert data.train.paths[0] == str(tmp_path / "cropped_aligned" / names[0])


def test_the_hust_mtl_recipe_trains_on_an_abaw4_mtl_list(tmp_path):
    names = [f"v{i % 2}/{i:05d}.png" for i in range(24)]
    faces = _faces(tmp_path / "cropped_aligned", names, seed=5)
    rng = np.random.default_rng(0)
    rows = [",".join(["image", "valence", "arousal", "expression", *ABAW_AUS])]
    for name, label, va, aus in zip(names, faces.labels, faces.valence_arousal, faces.aus):
        cells = [name, f"{va[0]:.3f}", f"{va[1]:.3f}", str(label + 1)] + [str(int(a > 0.5)) for a in aus]
        if rng.random() < 0.2:
            cells[1:3] = ["-5", "-5"]
        rows.append(",".join(cells))
    listing = tmp_path / "mtl.txt"
    listing.write_text("\n".join(rows) + "\n")
    from affectfer import recipes

    r = recipes.run("hust_mtl", data=str(listing), tiny=True, progress=False,
                    overrides=["val_fraction=0.5", "batch_size=4", "image_size=32"])
    np.testing.assert_allclose(r["abaw_mtl"], r["va_ccc"] + r["expr_macro_f1"] + r["au_macro_f1"], rtol=1e-9)


def _affectnet_rows(names):
    # subDirectory_filePath, face box (x, y, w, h), 68 landmarks, expression (AffectNet codes), valence, arousal
    points = ";".join(f"{10 + k % 5}.0;{12 + k % 7}.0" for k in range(68))
    codes = [1, 2, 6, 3, 0, 7, 4, 5]  # happy, sad, anger, surprise, neutral, contempt, fear, disgust
    return [f"{name},4,6,30,28,\"{points}\",{code},0.5,-0.25" for name, code in zip(names, codes)], codes


def test_an_affectnet_csv_is_read_cropped_and_in_the_recipe_order(tmp_path):
    names = [f"{k}/face{k}.png" for k in range(8)]
    _faces(tmp_path / "Manually_Annotated_Images", names)
    rows, codes = _affectnet_rows(names)
    lists = tmp_path / "Manually_Annotated_file_lists"
    lists.mkdir()
    with_header = lists / "training.csv"
    with_header.write_text("subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,"
                           "valence,arousal\n" + "\n".join(rows) + "\n")
    without_header = lists / "validation.csv"  # the released validation.csv has no header row
    without_header.write_text("\n".join(rows) + "\n")
    assert C.list_format(str(with_header)) == C.list_format(str(without_header)) == "affectnet"
    data = C.load_data({"train": str(with_header), "val": str(without_header)}, SENET)
    # contempt (code 7) is not a class of this recipe: AffectNet is read with 7 classes, contempt left out
    kept = [c for c in codes if c != 7]
    affectnet_order = ("neutral", "happiness", "sadness", "surprise", "fear", "disgust", "anger")
    np.testing.assert_array_equal(data.train.labels, [SENET.index(affectnet_order[c]) for c in kept])
    assert len(data.val) == 7 and data.train.classes == list(SENET)
    np.testing.assert_array_equal(data.train.boxes[0], [4, 6, 34, 34])  # x, y, x + w, y + h: each face cropped
    np.testing.assert_allclose(data.train.targets[0, :2], [0.5, -0.25])


def test_an_expw_label_list_is_read_with_its_face_boxes(tmp_path):
    names = [f"img{k}.png" for k in range(6)]
    _faces(tmp_path / "image" / "origin", names)
    labels = [0, 3, 4, 5, 6, 2]  # angry, happy, sad, surprise, neutral, fear
    (tmp_path / "label").mkdir()
    listing = tmp_path / "label" / "label.lst"
    listing.write_text("".join(f"{name} 0 5 3 35 38 {0.9:.2f} {label}\n" for name, label in zip(names, labels)))
    assert C.list_format(str(listing)) == "expw"
    data = C.load_data((str(listing), str(listing)), SENET)
    expw_order = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")
    np.testing.assert_array_equal(data.val.labels, [SENET.index(expw_order[k]) for k in labels])
    np.testing.assert_array_equal(data.train.boxes[0], [3, 5, 35, 38])  # left, top, right, bottom
    assert data.train.paths[1] == str(tmp_path / "image" / "origin" / "img1.png")
    with pytest.raises(ValueError, match=r"\['angry'\] are not among"):  # a class with samples must be known
        C.load_data((str(listing), str(listing)), ("fear", "happiness", "sadness", "surprise", "neutral"))


def test_a_plain_csv_list_is_still_a_csv_list(tmp_path):
    names = [f"f{k}.png" for k in range(4)]
    _faces(tmp_path, names)
    listing = tmp_path / "list.csv"
    listing.write_text("path,label,valence\n" + "".join(f"{n},{k % 2},0.1\n" for k, n in enumerate(names)))
    assert C.list_format(str(listing)) == "csv"
    data = C.load_data((str(listing), str(listing)), ("anger", "disgust"))
    np.testing.assert_array_equal(data.train.labels, [0, 1, 0, 1]) and data.train.targets.shape == (4, 1)
