"""affectfer.data.pack / PackedDataset: exact round trips, same batches as the source files,
deterministic bytes, atomic writes, and hostile files refused with errors naming them."""
import gc
import os
import re
import signal
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest

import affectfer.transforms as T
from affectfer.data import (ABAWDataset, ArrayDataset, CSVDataset, ImageFolder, Loader, PackedDataset, RandomSampler,
                            pack)
from affectfer.transforms import functional as TF

from tests.images import JPEG_BASELINE, write_png

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def random_image(rng, lo=5, hi=19):
    return rng.integers(0, 256, (int(rng.integers(lo, hi)), int(rng.integers(lo, hi)), 3), dtype=np.uint8)


@pytest.fixture
def folder(tmp_path, rng):
    """An ImageFolder of 3 classes: PNG files of different sizes and a JPEG in each class."""
    root = tmp_path / "faces"
    for c in ("angry", "happy", "sad"):
        (root / c).mkdir(parents=True)
        for k in range(4):
            if k == 3:
                (root / c / "3.jpg").write_bytes(JPEG_BASELINE)
            else:
                write_png(str(root / c / f"{k}.png"), random_image(rng))
    return ImageFolder(str(root))


@pytest.fixture
def csv_ds(tmp_path, rng):
    rows = ["path,label,valence,arousal,mask"]
    for k in range(9):
        write_png(str(tmp_path / f"{k}.png"), random_image(rng))
        v, a = rng.standard_normal(2)
        rows.append(f"{k}.png,{k % 3},{v},{a},{k % 2}")
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    return CSVDataset(str(tmp_path / "list.csv"), num_classes=3)


def collect(loader):
    return [tuple(np.asarray(t).copy() for t in b) for b in loader]


def test_round_trip_exact(tmp_path, folder, csv_ds, rng):
    p = pack(folder, tmp_path / "f.afpack", workers=2, progress=False)
    ds = PackedDataset(p, verify_crc=True)
    assert len(ds) == len(folder) and ds.classes == folder.classes and ds.targets is None and ds.max_side is None
    assert np.array_equal(ds.labels, folder.labels) and ds.labels.dtype == np.int64
    for i in range(len(folder)):
        image, label = ds[i]
        assert np.array_equal(image, folder[i][0]) and label == folder.labels[i]
        assert tuple(ds.shapes[i]) == image.shape and not image.flags.writeable
    # the table's CRCs are zlib's CRC-32 of the pixels
    assert [zlib.crc32(ds[i][0].tobytes()) for i in range(len(ds))] == ds.pack_file.crcs().tolist()

    c = PackedDataset(pack(csv_ds, tmp_path / "c.afpack", progress=False))
    assert c.target_names == ["valence", "arousal", "mask"] and c.classes == ["0", "1", "2"]
    assert c.targets.dtype == np.float32 and np.array_equal(c.targets, csv_ds.targets)
    image, label, targets = c[-1]
    assert np.array_equal(image, csv_ds[-1][0]) and label == 2 and np.array_equal(targets, csv_ds.targets[-1])

    gray = rng.integers(0, 256, (5, 7, 6), dtype=np.uint8)  # 1-channel images stay 1-channel
    a = PackedDataset(pack(ArrayDataset(gray, [0, 1, 0, 1, 1], classes=["x", "y"]), tmp_path / "a.afpack", progress=False))
    assert a[4][0].shape == (7, 6, 1) and np.array_equal(a[4][0][..., 0], gray[4])


def test_abaw_targets_round_trip(tmp_path, rng):
    ann, img = tmp_path / "ann", tmp_path / "img"
    ann.mkdir()
    (ann / "v.txt").write_text("valence,arousal\n0.5,-0.1\n-5,-5\n0.25,0.75\n")
    (img / "v").mkdir(parents=True)
    for f in ("00001.jpg", "00002.jpg", "00003.jpg"):
        write_png(str(img / "v" / f), random_image(rng))  # stb sniffs the content, not the name
    src = ABAWDataset(str(ann), str(img), task="va")
    ds = PackedDataset(pack(src, tmp_path / "abaw.afpack", progress=False))
    assert ds.labels.tolist() == [-1, -1] and ds.target_names == ["valence", "arousal"]
    assert np.array_equal(ds.targets, src.targets) and np.array_equal(ds[1][0], src[1][0])


def test_same_batches_as_the_source(folder, csv_ds, tmp_path):
    augment = T.Compose([T.RandomResizedCrop(8), T.RandomHorizontalFlip(), T.ColorJitter(0.4, 0.4, 0.4, 0.1),
                         T.ToTensor(), T.Normalize([0.5, 0.4, 0.3], [0.2, 0.25, 0.3])])
    flip_first = T.Compose([T.RandomHorizontalFlip(1.0), T.RandAugment(2, 9), T.Resize((7, 9)), T.ToTensor()])
    for src, name in ((folder, "f"), (csv_ds, "c")):
        path = pack(src, tmp_path / f"{name}.afpack", workers=3, progress=False)
        before = open(path, "rb").read()
        packed = PackedDataset(path)
        for tf in (augment, flip_first):
            for workers in (1, 3):
                want = collect(Loader(src, batch_size=4, transform=tf, shuffle=True, seed=7, workers=2))
                got = collect(Loader(packed, batch_size=4, transform=tf, shuffle=True, seed=7, workers=workers))
                assert len(got) == len(want) and len(got[0]) == (2 if src is folder else 3)
                for g, w in zip(got, want):
                    for gt, wt in zip(g, w):
                        assert gt.dtype == wt.dtype and np.array_equal(gt, wt)
        # in-place stages (the flip) worked on copies: the read-only mapping is untouched
        assert open(path, "rb").read() == before


def test_same_input_same_bytes(folder, tmp_path):
    a = pack(folder, tmp_path / "a.afpack", workers=1, chunk_size=1, progress=False)
    b = pack(folder, tmp_path / "b.afpack", workers=3, chunk_size=5, progress=False)
    assert open(a, "rb").read() == open(b, "rb").read()
    c = pack(folder, tmp_path / "c.afpack", max_side=6, workers=1, progress=False)
    d = pack(folder, tmp_path / "d.afpack", max_side=6, workers=3, chunk_size=2, progress=False)
    assert open(c, "rb").read() == open(d, "rb").read() != open(a, "rb").read()
    e = pack(PackedDataset(a), tmp_path / "e.afpack", max_side=6, progress=False)  # shrinking a pack
    assert open(e, "rb").read() == open(c, "rb").read()


def test_max_side_shrinks_like_resize(folder, tmp_path):
    ds = PackedDataset(pack(folder, tmp_path / "s.afpack", max_side=9, progress=False))
    assert ds.max_side == 9
    for i in range(len(folder)):
        src = folder[i][0]
        want = TF.resize(src, 9) if min(src.shape[:2]) > 9 else src  # never enlarged
        assert np.array_equal(ds[i][0], want)
    gray = np.random.default_rng(0).integers(0, 256, (2, 30, 20, 1), dtype=np.uint8)
    g = PackedDataset(pack(ArrayDataset(gray, [0, 1]), tmp_path / "g.afpack", max_side=10, progress=False))
    assert g[1][0].shape == (15, 10, 1) and np.array_equal(g[1][0][..., 0], TF.resize(gray[1], 10).reshape(15, 10))


def test_views_keep_the_mapping_alive(folder, tmp_path):
    ds = PackedDataset(pack(folder, tmp_path / "v.afpack", progress=False))
    image, labels, want = ds[3][0], ds.labels, folder[3][0].copy()
    del ds
    gc.collect()
    assert np.array_equal(image, want) and len(labels) == len(folder)
    with pytest.raises(ValueError):
        image[0, 0, 0] = 1


# ---- hostile files ----

HEADER = struct.Struct("<8sIIQIIQQQQQQIII36s")  # the 128-byte header of docs/pack-format.md
FIELDS = ("magic", "version", "header_size", "count", "num_classes", "num_targets", "strings_offset", "strings_size",
          "table_offset", "table_size", "data_offset", "file_size", "max_side", "flags", "crc", "reserved")


def header(data):
    return dict(zip(FIELDS, HEADER.unpack_from(data)))


def rewrite(data, fix_crc=True, **fields):
    """The pack bytes with header fields replaced and (by default) the header CRC recomputed, so that
    each hostile case reaches the check it targets instead of stopping at the checksum."""
    h = header(data)
    h.update(fields)
    out = bytearray(data)
    HEADER.pack_into(out, 0, *(h[f] for f in FIELDS))
    return refresh_crc(out) if fix_crc else bytes(out)


def refresh_crc(data):
    out = bytearray(data)
    end = header(out)["data_offset"]
    if end > len(out) or end < 128:
        return bytes(out)
    out[88:92] = b"\0\0\0\0"
    out[88:92] = struct.pack("<I", zlib.crc32(bytes(out[:end])))
    return bytes(out)


def column(data, name):
    """(offset of column `name`, N) from the header, recomputed the way the format defines it."""
    h = header(data)
    N, align = h["count"], lambda x: (x + 63) // 64 * 64
    offsets = h["table_offset"]
    labels = align(offsets + 8 * N)
    shapes = align(labels + 8 * N)
    crcs = align(shapes + 12 * N)
    return {"offsets": offsets, "labels": labels, "shapes": shapes, "crcs": crcs}[name], N


def patch(data, name, i, fmt, value):
    out = bytearray(data)
    start, _ = column(data, name)
    struct.pack_into(fmt, out, start + struct.calcsize(fmt) * i if name != "shapes" else start + 12 * i, *value)
    return refresh_crc(out)


@pytest.fixture
def good(tmp_path, csv_ds):
    path = pack(csv_ds, tmp_path / "good.afpack", progress=False)
    return open(path, "rb").read()


def hostile_cases(good):
    n = len(good)
    h = header(good)
    last = h["data_offset"] + 64
    return {
        "empty": (b"", "shorter than the 128-byte header"),
        "truncated header": (good[:100], "shorter than the 128-byte header"),
        "truncated table": (good[:h["data_offset"] - 10], "header says"),
        "truncated pixels": (good[:-7], "header says"),
        "appended": (good + b"\0", "header says"),
        "wrong magic": (b"XFPACK\r\n" + good[8:], "wrong magic"),
        "text-mode transfer": (good[:6] + b"\n" + good[8:], "wrong magic"),
        "newer version": (rewrite(good, version=2), "version 2 is not supported"),
        "count over the limit": (rewrite(good, count=1 << 62), "over the limit"),
        "count past the file": (rewrite(good, count=1 << 39), "layout gives|beyond the end"),
        "count past the file, table fields agreeing": (rewrite(
            good, count=1 << 30, table_size=(1 << 30) * 48, data_offset=h["table_offset"] + (1 << 30) * 48),
            "layout gives|beyond the end"),
        "too many targets": (rewrite(good, num_targets=70000), "at most 65536"),
        "strings size overflow": (rewrite(good, strings_size=(1 << 64) - 1), "beyond the end"),
        "table offset moved": (rewrite(good, table_offset=h["table_offset"] + 64), "table offset"),
        "header crc": (rewrite(good, fix_crc=False, max_side=3), "checksum mismatch"),
        "table byte flipped": (good[:h["table_offset"]] + bytes([good[h["table_offset"]] ^ 1])
                               + good[h["table_offset"] + 1:], "checksum mismatch"),
        "flags": (rewrite(good, flags=1), "flags"),
        "reserved bytes": (rewrite(good, reserved=b"\1" + b"\0" * 35), "reserved byte"),
        "offset past the end": (patch(good, "offsets", 2, "<Q", (n - 10,)), "outside the data section"),
        "offset huge": (patch(good, "offsets", 0, "<Q", ((1 << 64) - 64,)), "outside the data section"),
        "offset in the table": (patch(good, "offsets", 1, "<Q", (64,)), "outside the data section"),
        "offset misaligned": (patch(good, "offsets", 1, "<Q", (last + 1,)), "aligned"),
        "shape overflow": (patch(good, "shapes", 0, "<III", (65536, 65536, 3)), "outside the data section"),
        "shape wraps": (patch(good, "shapes", 0, "<III", (0xFFFFFFFF, 0xFFFFFFFF, 3)), "sides must be in"),
        "zero side": (patch(good, "shapes", 0, "<III", (0, 5, 3)), "sides must be in"),
        "channels": (patch(good, "shapes", 0, "<III", (5, 5, 2)), "channels 1 or 3"),
        "label": (patch(good, "labels", 3, "<q", (3,)), r"label 3, outside \[-1, 3\)"),
        "name length": (refresh_crc(good[:128] + struct.pack("<I", 0xFFFFFFF0) + good[132:]), "name 0 has length"),
    }


def test_hostile_files_raise_naming_the_file(tmp_path, good):
    PackedDataset(tmp_path / "good.afpack", verify_crc=True)  # the unmodified file is fine
    for name, (data, message) in hostile_cases(good).items():
        path = tmp_path / f"bad-{name.replace(' ', '_')}.afpack"
        path.write_bytes(data)
        with pytest.raises(ValueError) as e:
            PackedDataset(path)
        assert str(path) in str(e.value), name
        assert re.search(message, str(e.value)), (name, str(e.value))


def test_bad_utf8_name(tmp_path, good):
    data = bytearray(good)
    data[132] = 0xFF  # first byte of class name 0 ("0")
    path = tmp_path / "utf8.afpack"
    path.write_bytes(refresh_crc(data))
    with pytest.raises(ValueError, match=f"{path}.*class name 0 is not valid UTF-8"):
        PackedDataset(path)


def test_pixel_crc_mismatch(tmp_path, good):
    data = bytearray(good)
    start, _ = column(good, "offsets")
    off3 = struct.unpack_from("<Q", good, start + 8 * 3)[0]
    data[off3 + 5] ^= 0x10
    path = tmp_path / "pixels.afpack"
    path.write_bytes(bytes(data))
    ds = PackedDataset(path)  # opening does not read pixels
    with pytest.raises(ValueError, match=f"'{path}': sample 3 is corrupt"):
        ds.verify()
    with pytest.raises(ValueError, match=f"'{path}': sample 3 is corrupt"):
        PackedDataset(path, verify_crc=True)


def test_not_a_regular_file(tmp_path):
    with pytest.raises(OSError, match="missing.afpack"):
        PackedDataset(tmp_path / "missing.afpack")
    with pytest.raises(OSError, match="not a regular file"):
        PackedDataset(tmp_path)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):  # and does not block
        PackedDataset(tmp_path / "fifo")


def test_mutated_packs_never_crash(tmp_path, good, rng):
    """Random byte edits anywhere (header CRC refreshed, so they reach the bounds checks): every
    file either opens, and then every image is readable and the loader runs, or raises ValueError."""
    path = tmp_path / "m.afpack"
    opened = 0
    for trial in range(300):
        data = bytearray(good)
        end = header(good)["data_offset"]
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(0, end))
            data[k] = int(rng.integers(0, 256)) if trial % 3 else data[k] ^ (1 << int(rng.integers(0, 8)))
        path.write_bytes(refresh_crc(data))
        try:
            ds = PackedDataset(path)
        except ValueError as e:
            assert str(path) in str(e)
            continue
        opened += 1
        for i in range(len(ds)):
            int(ds[i][0][-1, -1, -1])  # the last byte of every image is mapped
        collect(Loader(ds, batch_size=3, transform=T.Compose([T.Resize((4, 4)), T.ToTensor()]), workers=2))
    assert opened > 0


# ---- writing ----

def test_writer_errors_leave_no_file(tmp_path, folder):
    bad = ArrayDataset(np.zeros((3, 4, 4, 3), np.uint8), [0, 1, 1], classes=["a", "b"])
    bad.labels = np.array([0, 1, 2])  # a label the classes do not cover
    with pytest.raises(ValueError, match=r"sample 2 has label 2, outside \[-1, 2\)"):
        pack(bad, tmp_path / "x.afpack", progress=False)
    with open(folder.paths[5], "r+b") as f:  # a corrupt source image
        f.write(b"garbage!")
    with pytest.raises(ValueError, match=os.path.basename(folder.paths[5])):
        pack(folder, tmp_path / "y.afpack", chunk_size=4, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["faces"]  # no pack, no temporary file
    with pytest.raises(ValueError, match="max_side"):
        pack(folder, tmp_path / "z.afpack", max_side=0)
    with pytest.raises(TypeError, match="dataset"):
        pack(object(), tmp_path / "z.afpack")


CHILD = r"""
import sys, time
import numpy as np
sys.path.insert(0, sys.argv[1])
import importlib
P = importlib.import_module("affectfer.data.pack")  # the module (affectfer.data.pack is the function)

class Stall:  # a progress bar that announces the first chunk, then stalls the writer
    def __init__(self, *a, **k): pass
    def __enter__(self): return self
    def __exit__(self, *a): return False
    def update(self, n):
        print("written", flush=True)
        time.sleep(60)

import tqdm.auto
tqdm.auto.tqdm = Stall
images = np.full((8, 64, 64, 3), int(sys.argv[3]), np.uint8)
from affectfer.data import ArrayDataset
P.pack(ArrayDataset(images, np.zeros(8, int)), sys.argv[2], chunk_size=2)
"""


def kill_mid_write(path, value):
    child = subprocess.Popen([sys.executable, "-c", CHILD, ROOT, str(path), str(value)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        line = child.stdout.readline()
        assert line.strip() == "written", child.stderr.read()
        tmp = [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]
        assert len(tmp) == 1 and os.path.getsize(os.path.join(os.path.dirname(path), tmp[0])) > 0
        child.send_signal(signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    return os.path.join(os.path.dirname(path), tmp[0])


def test_kill_9_mid_write_leaves_no_complete_looking_file(tmp_path):
    path = tmp_path / "k.afpack"
    tmp = kill_mid_write(path, 1)
    assert not path.exists()
    with pytest.raises(ValueError, match="wrong magic"):  # the leftover temporary file is not a pack
        PackedDataset(tmp)
    os.remove(tmp)
    previous = pack(ArrayDataset(np.full((2, 4, 4, 3), 9, np.uint8), [0, 0]), path, progress=False)
    before = open(previous, "rb").read()
    kill_mid_write(path, 2)
    assert open(path, "rb").read() == before  # the previous complete pack, untouched
    assert PackedDataset(path)[1][0][0, 0, 0] == 9


def test_loader_errors_name_the_pack_and_sample(folder, tmp_path):
    path = pack(folder, tmp_path / "e.afpack", progress=False)
    loader = Loader(PackedDataset(path), batch_size=2, transform=T.Compose([T.RandomCrop(64), T.ToTensor()]))
    with pytest.raises(ValueError, match=f"{path}, sample 0: RandomCrop"):
        collect(loader)
