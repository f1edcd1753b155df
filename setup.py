"""Builds affectfer._C from csrc/.

Every .c file under csrc/ is compiled (in parallel, and only when it, a header or the flags changed),
against the NumPy C API and a CBLAS. Environment:
  AFFECTFER_BLAS=scipy-openblas32 | system  which CBLAS to link. Default: the scipy-openblas32 wheel
                                            (pip install scipy-openblas32; pyproject.toml's build
                                            requirements bring it) when it is importable, else the
                                            system's OpenBLAS (Debian: libopenblas-dev). Setting
                                            OPENBLAS_INCLUDE_DIR also selects the system one.
  OPENBLAS_INCLUDE_DIR / OPENBLAS_LIB_DIR   where cblas.h and libopenblas are (system BLAS; default: Debian's)
  STB_INCLUDE_DIR                           where stb_image.h is (default: an sdist's third_party/stb,
                                            build/stb from `make stb`, /usr/include/stb)
  AFFECTFER_PORTABLE=1                      no -march=native: the hot kernels are compiled for x86-64-v4,
                                            -v3 and the baseline and chosen when _C loads (csrc/core/cpu.h)
  AFFECTFER_BUNDLED_BLAS=1                  the wheel carries the BLAS itself (`make wheel` sets it, then
                                            `auditwheel repair` copies libscipy_openblas.so into the wheel),
                                            so scipy-openblas32 is no run-time requirement
  AFFECTFER_DEBUG=1                         -O0 -g, assertions on
  AFFECTFER_SANITIZE=1                      AddressSanitizer + UndefinedBehaviorSanitizer, -O1 -g, assertions
                                            on (`make test-asan` builds this way into build/asan/)

How _C finds libscipy_openblas.so at run time, with no LD_LIBRARY_PATH: through its RUNPATH
$ORIGIN/../scipy_openblas32/lib (the wheel's package installed beside affectfer in site-packages), the
absolute library folder for builds of this checkout (never in a wheel), and, in a repaired wheel, the
copy auditwheel puts in affectfer.libs/. `make sdist` writes a source distribution that carries the stb_image header fetched
by `make stb` and stb's licence (third_party/stb/), so a pip-only machine builds it without libstb-dev.
"""
import glob
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.command.sdist import sdist

ROOT = os.path.dirname(os.path.abspath(__file__))
SDIST_STB = os.path.join("third_party", "stb")  # where an sdist carries stb_image.h and its licence


class Blas:
    """The CBLAS to compile and link against: directories, library, macros, and what _C then needs
    at run time."""

    def __init__(self):
        choice = os.environ.get("AFFECTFER_BLAS", "")
        if choice not in ("", "scipy-openblas32", "system"):
            sys.exit("affectfer: AFFECTFER_BLAS must be 'scipy-openblas32' or 'system', got %r" % choice)
        if not choice:
            choice = "system" if os.environ.get("OPENBLAS_INCLUDE_DIR") else "scipy-openblas32"
            try:
                import scipy_openblas32  # noqa: F401
            except ImportError:
                choice = "system"
        self.rpath, self.requires = [], []
        if choice == "scipy-openblas32":
            self._wheel()
        else:
            self._system()

    def _wheel(self):
        try:
            import scipy_openblas32
            from importlib.metadata import version
        except ImportError:
            sys.exit("affectfer: AFFECTFER_BLAS=scipy-openblas32 but it is not importable (pip install scipy-openblas32)")
        ver = version("scipy-openblas32")
        self.include = [scipy_openblas32.get_include_dir()]
        self.libdir = scipy_openblas32.get_lib_dir()
        self.library = scipy_openblas32.get_library()  # "scipy_openblas"
        # Its symbols carry a prefix (scipy_cblas_sgemm) so that it never clashes with the OpenBLAS
        # NumPy or SciPy load into the same process; csrc/core/blas.h adds it.
        self.macros = [("BLAS_SYMBOL_PREFIX", "scipy_"), ("AF_BLAS_NAME", '"scipy-openblas32 %s"' % ver)]
        # Installed from an sdist, _C sits in site-packages/affectfer/ and the library in
        # site-packages/scipy_openblas32/lib/ (a run-time requirement then).
        if os.environ.get("AFFECTFER_BUNDLED_BLAS") != "1":
            self.rpath = ["$ORIGIN/../scipy_openblas32/lib"]
            self.requires = ["scipy-openblas32>=%s" % ".".join(ver.split(".")[:3])]

    def _system(self):
        include = os.environ.get("OPENBLAS_INCLUDE_DIR")
        self.libdir = os.environ.get("OPENBLAS_LIB_DIR")
        self.library = "openblas"
        self.macros = [("AF_BLAS_NAME", '"system OpenBLAS"')]
        if include:
            self.include = [include]
            return
        candidates = ["/usr/include/x86_64-linux-gnu/openblas-pthread", "/usr/include/aarch64-linux-gnu/openblas-pthread",
                      "/usr/include/openblas", "/usr/include/x86_64-linux-gnu", "/usr/include"]
        for d in candidates:
            if os.path.exists(os.path.join(d, "cblas.h")):
                self.include = [d]
                return
        sys.exit("affectfer: cblas.h not found. pip install scipy-openblas32, install OpenBLAS (Debian: apt-get "
                 "install libopenblas-dev), or set OPENBLAS_INCLUDE_DIR / OPENBLAS_LIB_DIR.")


def stb_version(include_dir):
    with open(os.path.join(include_dir, "stb_image.h"), encoding="latin-1") as f:
        head = f.readline()  # "/* stb_image - v2.30 - public domain image loader ..."
    try:
        return tuple(int(p) for p in head.split(" - v")[1].split(" ")[0].split("."))
    except (IndexError, ValueError):
        return (0, 0)


def stb_dirs():
    dirs = [os.environ.get("STB_INCLUDE_DIR"), os.path.join(ROOT, SDIST_STB),
            os.path.join(ROOT, "build", "stb", "usr", "include", "stb"), "/usr/include/stb"]
    found = [d for d in dirs if d and os.path.exists(os.path.join(d, "stb_image.h"))][:1]
    if not found:
        sys.exit("affectfer: stb_image.h not found (the image decoder needs it). Run `make stb` (fetches "
                 "Debian trixie's libstb-dev into build/stb), install libstb-dev, or set STB_INCLUDE_DIR.")
    version = stb_version(found[0])
    if version < (2, 28):
        sys.stderr.write("WARNING: affectfer: %s/stb_image.h is stb_image %s, older than 2.28 (missing its security "
                         "fixes for malformed files). Run `make stb` to build against Debian trixie's 2.30.\n"
                         % (found[0], ".".join(map(str, version)) if version != (0, 0) else "of unknown version"))
    return found


def stb_licence(include_dir):
    """Debian's copyright file of the package the header came from: <prefix>/include/stb/stb_image.h
    has it at <prefix>/share/doc/libstb-dev/copyright (the system's and `make stb`'s layout); an sdist
    carries it beside the header."""
    for path in (os.path.join(include_dir, "copyright"),
                 os.path.join(include_dir, "..", "..", "share", "doc", "libstb-dev", "copyright")):
        if os.path.exists(path):
            return os.path.normpath(path)
    return None


class ParallelIncrementalBuild(build_ext):
    """setuptools compiles one extension's sources one after another and always all of them; this
    compiles them on every core and skips objects newer than their source and every header, unless
    the flags changed since the last build (another BLAS, a portable build)."""

    def run(self):
        # setuptools clears `inplace` while it builds (it copies the result afterwards)
        self.for_checkout = bool(self.inplace or getattr(self, "editable_mode", False)) \
            or "bdist_wheel" not in self.distribution.command_obj
        super().run()

    def build_extension(self, ext):
        compiler = self.compiler
        # A build for this checkout (in place, editable, `make test-asan`'s build/asan) also finds the
        # library where the build found it; a wheel (bdist_wheel, which pip runs) never records a
        # path of the build machine.
        if BLAS.library == "scipy_openblas" and self.for_checkout:
            ext.extra_link_args = ext.extra_link_args + ["-Wl,-rpath," + BLAS.libdir]
        stb = stb_dirs()
        sys.stderr.write("affectfer: BLAS %s, stb_image.h from %s\n" % (dict(ext.define_macros)["AF_BLAS_NAME"], stb[0]))
        headers = [h for pattern in ("*.h", "*.inc")  # .inc: kernel fragments included in templated sections
                   for h in glob.glob(os.path.join(ROOT, "csrc", "**", pattern), recursive=True)]
        headers += [os.path.join(d, "stb_image.h") for d in stb]  # a newer stb rebuilds decode.c
        newest_header = max((os.path.getmtime(h) for h in headers), default=0)
        macros = ext.define_macros + [(u, None) for u in ext.undef_macros]
        flags = repr((sorted(map(str, macros)), ext.include_dirs, ext.extra_compile_args, compiler.compiler_so))
        stamp = os.path.join(self.build_temp, "affectfer-flags.txt")
        same_flags = False
        if os.path.exists(stamp):
            with open(stamp) as f:
                same_flags = f.read() == flags

        def compile_one(src):
            obj = compiler.object_filenames([src], output_dir=self.build_temp)[0]
            if same_flags and os.path.exists(obj) and os.path.getmtime(obj) > max(os.path.getmtime(src), newest_header):
                return obj
            return compiler.compile([src], output_dir=self.build_temp, macros=macros,
                                    include_dirs=ext.include_dirs, extra_postargs=ext.extra_compile_args,
                                    depends=ext.depends)[0]

        with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
            objects = list(pool.map(compile_one, ext.sources))
        os.makedirs(self.build_temp, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(flags)
        ext_path = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(ext_path), exist_ok=True)
        compiler.link_shared_object(objects, ext_path, libraries=ext.libraries, library_dirs=ext.library_dirs,
                                    runtime_library_dirs=ext.runtime_library_dirs, extra_postargs=ext.extra_link_args,
                                    export_symbols=self.get_export_symbols(ext), target_lang="c")


class SdistWithStb(sdist):
    """The source distribution carries stb_image.h and stb's licence in third_party/stb/ (the
    repository never does): a machine without root and without libstb-dev builds from it with pip
    alone. The header is the one the build would use (`make stb` fetches Debian trixie's 2.30); one
    older than 2.28 (without its security fixes) is refused."""

    def make_release_tree(self, base_dir, files):
        super().make_release_tree(base_dir, files)
        include = stb_dirs()[0]
        if stb_version(include) < (2, 28):
            sys.exit("affectfer: sdist: %s/stb_image.h is older than 2.28; run `make stb` first" % include)
        licence = stb_licence(include)
        if licence is None:
            sys.exit("affectfer: sdist: stb's licence file (Debian's share/doc/libstb-dev/copyright) was not found "
                     "beside %s; run `make stb`" % include)
        dest = os.path.join(base_dir, SDIST_STB)
        os.makedirs(dest, exist_ok=True)
        shutil.copyfile(os.path.join(include, "stb_image.h"), os.path.join(dest, "stb_image.h"))
        shutil.copyfile(licence, os.path.join(dest, "copyright"))


BLAS = Blas()


def extension():
    sources = sorted(glob.glob("csrc/**/*.c", recursive=True))
    debug = os.environ.get("AFFECTFER_DEBUG") == "1"
    sanitize = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"] \
        if os.environ.get("AFFECTFER_SANITIZE") == "1" else []
    cflags = ["-std=gnu11", "-fopenmp", "-Wall", "-Wno-unused-function", "-fvisibility=hidden",
              # Exact float32 semantics: no contraction of a*b+c into FMA (image ops must match
              # torchvision bit for bit: torch evaluates a*b+c with two roundings on the CPU). It also
              # keeps the AVX-512, AVX2 and baseline clones of a portable build (csrc/core/cpu.h) bitwise equal.
              "-ffp-contract=off", "-fno-math-errno"]
    cflags += ["-O0", "-g"] if debug else ["-O1", "-g"] if sanitize else ["-O3", "-DNDEBUG"]
    macros = [("AF_HAVE_STB", "1")] + BLAS.macros
    if os.environ.get("AFFECTFER_PORTABLE") != "1" and not debug:
        cflags.append("-march=native")
    else:
        macros.append(("AF_PORTABLE", "1"))
    cflags += sanitize
    stb = stb_dirs()
    macros.append(("AF_STB_NAME", '"stb_image %s"' % ".".join(map(str, stb_version(stb[0])))))
    return Extension("affectfer._C", sources=sources, include_dirs=["csrc", numpy.get_include()] + BLAS.include + stb,
                     library_dirs=[BLAS.libdir] if BLAS.libdir else [], libraries=[BLAS.library, "m"],
                     runtime_library_dirs=BLAS.rpath, define_macros=macros, extra_compile_args=cflags,
                     extra_link_args=["-fopenmp"] + sanitize)


setup(ext_modules=[extension()], install_requires=["numpy>=1.25", "tqdm>=4.60"] + BLAS.requires,
      cmdclass={"build_ext": ParallelIncrementalBuild, "sdist": SdistWithStb})
