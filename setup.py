"""Builds affectfer._C from csrc/.

Every .c file under csrc/ is compiled (in parallel, and only when it or a header changed), against
the NumPy C API and a CBLAS. Environment:
  OPENBLAS_INCLUDE_DIR / OPENBLAS_LIB_DIR   where cblas.h and libopenblas are (default: the system's)
  STB_INCLUDE_DIR                           where stb_image.h is (default: build/stb, /usr/include/stb)
  AFFECTFER_PORTABLE=1                      no -march=native (for wheels built on one machine, run on others)
  AFFECTFER_DEBUG=1                         -O0 -g, assertions on
  AFFECTFER_SANITIZE=1                      AddressSanitizer + UndefinedBehaviorSanitizer, -O1 -g, assertions
                                            on (`make test-asan` builds this way into build/asan/)
"""
import glob
import os
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


def cblas_dirs():
    include = os.environ.get("OPENBLAS_INCLUDE_DIR")
    libdir = os.environ.get("OPENBLAS_LIB_DIR")
    if include:
        return [include], [libdir] if libdir else []
    candidates = ["/usr/include/x86_64-linux-gnu/openblas-pthread", "/usr/include/aarch64-linux-gnu/openblas-pthread",
                  "/usr/include/openblas", "/usr/include/x86_64-linux-gnu", "/usr/include"]
    for d in candidates:
        if os.path.exists(os.path.join(d, "cblas.h")):
            return [d], [libdir] if libdir else []
    sys.exit("affectfer: cblas.h not found. Install OpenBLAS (Debian: apt-get install libopenblas-dev) "
             "or set OPENBLAS_INCLUDE_DIR / OPENBLAS_LIB_DIR.")


def stb_dirs():
    dirs = [os.environ.get("STB_INCLUDE_DIR"), os.path.join(ROOT, "build", "stb", "usr", "include", "stb"),
            "/usr/include/stb"]
    found = [d for d in dirs if d and os.path.exists(os.path.join(d, "stb_image.h"))][:1]
    if not found:
        sys.exit("affectfer: stb_image.h not found (the image decoder needs it). Run `make stb` (fetches "
                 "Debian trixie's libstb-dev into build/stb), install libstb-dev, or set STB_INCLUDE_DIR.")
    with open(os.path.join(found[0], "stb_image.h"), encoding="latin-1") as f:
        head = f.readline()  # "/* stb_image - v2.30 - public domain image loader ..."
    try:
        version = tuple(int(p) for p in head.split(" - v")[1].split(" ")[0].split("."))
    except (IndexError, ValueError):
        version = (0, 0)
    if version < (2, 28):
        sys.stderr.write("WARNING: affectfer: %s/stb_image.h is stb_image %s, older than 2.28 (missing its security "
                         "fixes for malformed files). Run `make stb` to build against Debian trixie's 2.30.\n"
                         % (found[0], ".".join(map(str, version)) if version != (0, 0) else "of unknown version"))
    return found


class ParallelIncrementalBuild(build_ext):
    """setuptools compiles one extension's sources one after another and always all of them; this
    compiles them on every core and skips objects newer than their source and every header."""

    def build_extension(self, ext):
        compiler = self.compiler
        headers = [h for pattern in ("*.h", "*.inc")  # .inc: kernel fragments included in templated sections
                   for h in glob.glob(os.path.join(ROOT, "csrc", "**", pattern), recursive=True)]
        headers += [os.path.join(d, "stb_image.h") for d in stb_dirs()]  # a newer stb rebuilds decode.c
        newest_header = max((os.path.getmtime(h) for h in headers), default=0)
        macros = ext.define_macros + [(u, None) for u in ext.undef_macros]

        def compile_one(src):
            obj = compiler.object_filenames([src], output_dir=self.build_temp)[0]
            if os.path.exists(obj) and os.path.getmtime(obj) > max(os.path.getmtime(src), newest_header):
                return obj
            return compiler.compile([src], output_dir=self.build_temp, macros=macros,
                                    include_dirs=ext.include_dirs, extra_postargs=ext.extra_compile_args,
                                    depends=ext.depends)[0]

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            objects = list(pool.map(compile_one, ext.sources))
        ext_path = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(ext_path), exist_ok=True)
        compiler.link_shared_object(objects, ext_path, libraries=ext.libraries, library_dirs=ext.library_dirs,
                                    extra_postargs=ext.extra_link_args, export_symbols=self.get_export_symbols(ext),
                                    target_lang="c")


def extension():
    sources = sorted(glob.glob("csrc/**/*.c", recursive=True))
    blas_inc, blas_lib = cblas_dirs()
    debug = os.environ.get("AFFECTFER_DEBUG") == "1"
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"] \
        if os.environ.get("AFFECTFER_SANITIZE") == "1" else []
    cflags = ["-std=gnu11", "-fopenmp", "-Wall", "-Wno-unused-function", "-fvisibility=hidden",
              # Exact float32 semantics: no contraction of a*b+c into FMA (image ops must match
              # torchvision bit for bit: torch evaluates a*b+c with two roundings on the CPU).
              "-ffp-contract=off", "-fno-math-errno"]
    cflags += ["-O0", "-g"] if debug else ["-O1", "-g"] if sanitize else ["-O3", "-DNDEBUG"]
    if os.environ.get("AFFECTFER_PORTABLE") != "1" and not debug:
        cflags.append("-march=native")
    cflags += sanitize
    macros = []
    stb = stb_dirs()
    macros.append(("AF_HAVE_STB", "1"))
    return Extension("affectfer._C", sources=sources, include_dirs=["csrc", numpy.get_include()] + blas_inc + stb,
                     library_dirs=blas_lib, libraries=["openblas", "m"], define_macros=macros,
                     extra_compile_args=cflags, extra_link_args=["-fopenmp"] + sanitize)


setup(ext_modules=[extension()], cmdclass={"build_ext": ParallelIncrementalBuild})
