"""atheris (libFuzzer for Python) harness over affectfer.weights.read_weights, the reader of
untrusted `.pth` files and NumPy pickles.

The property: any input either reads or raises WeightsError / ForbiddenGlobalError. Any other
exception, a crash, or memory past -rss_limit_mb is a finding (libFuzzer writes the input to
fuzz/crash-*). The first byte picks where the rest goes, so that mutations reach the pickle machinery
and not only the zip parser:

    0  the bytes as a file (torch zip, legacy stream, safetensors)
    1  data.pkl of a valid torch archive whose entries data/0 .. data/15 hold 256 bytes each
    2  a NumPy pickle (format="vggface2")
    3  the object pickle of a legacy torch stream

    python fuzz/fuzz_weights.py -runs=20000 -seed=1 fuzz/corpus-weights fuzz/seeds/weights

Seeds (fuzz/seeds/weights/, written by `python fuzz/fuzz_weights.py --write-seeds`): the tests'
genuine torch.save fixtures (mode 0) and their pickles (modes 1, 3), NumPy pickles (mode 2).
"""
import io
import os
import pickle
import sys
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

# affectfer is imported in main(), under atheris' instrumentation: `import affectfer` imports
# affectfer.weights too, so an earlier plain import would leave the reader untraced (the fuzzer then
# runs blind, finding no "interesting" input).

_LEGACY_HEAD = b"".join(pickle.dumps(x, protocol=2) for x in (
    0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                   "type_sizes": {"short": 2, "int": 4, "long": 4}}))


def _archive(pickled: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pickled)
        z.writestr("archive/byteorder", "little")
        for key in range(16):
            z.writestr(f"archive/data/{key}", bytes(range(256)))
        z.writestr("archive/version", "3\n")
    return buf.getvalue()


def one_input(data: bytes) -> None:
    from affectfer import weights

    if not data:
        return
    mode, rest = data[0] % 4, data[1:]
    source, fmt = {0: (rest, None), 1: (_archive(rest), "torch"), 2: (rest, "vggface2"),
                   3: (_LEGACY_HEAD + rest, "torch-legacy")}[mode]
    try:
        weights.read_weights(source, format=fmt)
    except (weights.WeightsError, weights.ForbiddenGlobalError):
        pass


def write_seeds(folder: str) -> None:
    import numpy as np

    data_dir = os.path.join(os.path.dirname(HERE), "tests", "weights", "data")
    os.makedirs(folder, exist_ok=True)
    seeds = {}
    for name in ("torch_zip.pth", "torch_legacy.pth", "torch_module.pth"):
        with open(os.path.join(data_dir, name), "rb") as f:
            raw = f.read()
        seeds["file_" + name] = b"\x00" + raw
        if raw.startswith(b"PK"):
            archive = zipfile.ZipFile(io.BytesIO(raw))
            pkl = [n for n in archive.namelist() if n.endswith("/data.pkl")][0]
            seeds["pickle_" + name] = b"\x01" + archive.read(pkl)
        else:
            seeds["legacy_" + name] = b"\x03" + raw[len(_LEGACY_HEAD):]
    arrays = {"conv.weight": np.arange(24, dtype=np.float32).reshape(2, 3, 2, 2), "n": np.array(3, np.int64)}
    for protocol in (2, 5):
        seeds[f"numpy_p{protocol}"] = b"\x02" + pickle.dumps(arrays, protocol=protocol)
    for name, blob in seeds.items():
        with open(os.path.join(folder, name), "wb") as f:
            f.write(blob)


def main() -> None:
    if sys.argv[1:] == ["--write-seeds"]:
        write_seeds(os.path.join(HERE, "seeds", "weights"))
        return
    import atheris

    with atheris.instrument_imports(include=["affectfer.weights"]):
        from affectfer import weights  # noqa: F401
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
