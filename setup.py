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
  AFFECTFER_CUDA=1 / =0                     force / refuse the CUDA build (default: built when nvcc is found)
  CUDA_HOME, NVCC                           where the CUDA toolkit / nvcc is
  AFFECTFER_CUDA_ARCH                       nvcc -gencode list (default: sm_90 code plus compute_90 PTX)

How _C finds libscipy_openblas.so at run time, with no LD_LIBRARY_PATH: through its RUNPATH
$ORIGIN/../scipy_openblas32/lib (the wheel's package installed beside affectfer in site-packages), the
absolute library folder for builds of this checkout (never in a wheel), and, in a repaired wheel, the
copy auditwheel puts in affectfer.libs/. `make sdist` writes a source distribution that carries the stb_image header fetched
by `make stb` and stb's licence (third_party/stb/), so a pip-only machine builds it without libstb-dev.
"""
import glob
import os
import shutil
import subprocess
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


# ---- CUDA: csrc/cuda/*.cu and csrc/ops/*.cu through nvcc --------------------------------------------
# The CUDA path is built whenever nvcc is found (AFFECTFER_CUDA=0 refuses it, =1 demands it). Headers
# and libraries come from the toolkit or, for a machine with only pip's nvidia-* wheels (what PyTorch
# installs), from site-packages/nvidia/<component>/{include,lib}. The wheels ship versioned sonames only
# (libcudart.so.12, no libcudart.so), so libraries are linked by file name (-l:libcudart.so.12), and
# every library folder goes into the RPATH: importing _C then needs no LD_LIBRARY_PATH.
CUDA_LIBS = {"cudart": "cuda_runtime", "cublas": "cublas", "cublasLt": "cublas", "cudnn": "cudnn"}
CUDA_HEADERS = {"cuda_runtime.h": "cuda_runtime", "cublasLt.h": "cublas", "cudnn.h": "cudnn"}


def _nvidia_wheel_dirs():
    """site-packages/nvidia/* folders of the nvidia-* wheels, or []."""
    try:
        import nvidia  # a namespace package: one entry per site-packages folder that has one
    except ImportError:
        return []
    return sorted(d for p in nvidia.__path__ for d in glob.glob(os.path.join(p, "*")) if os.path.isdir(d))


def _find_nvcc():
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [os.environ.get("NVCC"), home and os.path.join(home, "bin", "nvcc"), shutil.which("nvcc"),
                  "/usr/local/cuda/bin/nvcc"]
    candidates += [os.path.join(d, "bin", "nvcc") for d in _nvidia_wheel_dirs()]
    return next((c for c in candidates if c and os.path.isfile(c) and os.access(c, os.X_OK)), None)


def cuda_config():
    """None for a CPU build; else {nvcc, include_dirs, link_args, nvcc_flags}."""
    mode = os.environ.get("AFFECTFER_CUDA", "")
    if mode == "0":
        return None
    nvcc = _find_nvcc()
    if nvcc is None:
        if mode == "1":
            sys.exit("affectfer: AFFECTFER_CUDA=1 but nvcc was not found: set CUDA_HOME (or NVCC) to the CUDA "
                     "toolkit, or build without CUDA (AFFECTFER_CUDA=0).")
        return None
    toolkit = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    wheels = _nvidia_wheel_dirs()
    include_roots = [os.path.join(toolkit, "include"), os.path.join(toolkit, "targets", "x86_64-linux", "include"),
                     "/usr/include", "/usr/include/x86_64-linux-gnu"]
    lib_roots = [os.path.join(toolkit, "lib64"), os.path.join(toolkit, "lib"),
                 os.path.join(toolkit, "targets", "x86_64-linux", "lib"), "/usr/lib/x86_64-linux-gnu"]
    include_dirs, lib_dirs, link_args, missing = [], [], [], []
    for header, component in CUDA_HEADERS.items():
        dirs = include_roots + [os.path.join(w, "include") for w in wheels if os.path.basename(w) == component]
        found = next((d for d in dirs if os.path.exists(os.path.join(d, header))), None)
        if found is None:
            missing.append(header)
        elif found not in include_dirs:
            include_dirs.append(found)
    for lib, component in CUDA_LIBS.items():
        dirs = lib_roots + [os.path.join(w, "lib") for w in wheels if os.path.basename(w) == component]
        found = None
        for d in dirs:
            names = sorted(glob.glob(os.path.join(d, "lib%s.so*" % lib)), key=len)
            if names:
                found = (d, os.path.basename(names[0]))
                break
        if found is None:
            missing.append("lib%s.so" % lib)
            continue
        if found[0] not in lib_dirs:
            lib_dirs.append(found[0])
        link_args.append("-l:" + found[1])
    if missing:
        message = ("affectfer: nvcc is %s but %s not found (toolkit, /usr, or the nvidia-* wheels)"
                   % (nvcc, ", ".join(missing)))
        if mode == "1":
            sys.exit(message + ": install cuDNN/cuBLAS or build with AFFECTFER_CUDA=0.")
        sys.stderr.write("WARNING: %s; building for the CPU only.\n" % message)
        return None
    link_args = ["-L" + d for d in lib_dirs] + ["-Wl,-rpath," + d for d in lib_dirs] + link_args + ["-lstdc++"]
    arch = os.environ.get("AFFECTFER_CUDA_ARCH", "-gencode=arch=compute_90,code=sm_90 "
                                                 "-gencode=arch=compute_90,code=compute_90").split()
    flags = ["-std=c++17", "-O3", "-DNDEBUG", "-DAF_HAVE_CUDA=1", "-Xcompiler=-fPIC,-fvisibility=hidden,-Wall",
             "--Werror=all-warnings", "-Icsrc"] + ["-I" + d for d in include_dirs] + arch
    return {"nvcc": nvcc, "include_dirs": include_dirs, "link_args": link_args, "nvcc_flags": flags}


def compile_cuda(cuda, build_temp, newest_header):
    """Objects for every .cu (compiled two at a time: nvcc is memory-hungry), skipping up-to-date ones."""
    sources = sorted(glob.glob(os.path.join("csrc", "cuda", "*.cu")) + glob.glob(os.path.join("csrc", "ops", "*.cu")))
    cuda_headers = glob.glob(os.path.join(ROOT, "csrc", "**", "*.cuh"), recursive=True)
    newest = max([newest_header] + [os.path.getmtime(h) for h in cuda_headers])

    def one(src):
        obj = os.path.join(build_temp, src[:-3] + ".cu.o")
        if os.path.exists(obj) and os.path.getmtime(obj) > max(os.path.getmtime(src), newest):
            return obj
        os.makedirs(os.path.dirname(obj), exist_ok=True)
        cmd = [cuda["nvcc"], "-c", src, "-o", obj] + cuda["nvcc_flags"]
        print(" ".join(cmd))
        subprocess.check_call(cmd)
        return obj

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, sources))


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
        cuda = getattr(ext, "cuda", None)
        if cuda:
            objects += compile_cuda(cuda, self.build_temp, newest_header)
        os.makedirs(self.build_temp, exist_ok=True)
        with open(stamp, "w") as f:
            f.write(flags)
        ext_path = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(ext_path), exist_ok=True)
        link_args = ext.extra_link_args + (cuda["link_args"] if cuda else [])
        compiler.link_shared_object(objects, ext_path, libraries=ext.libraries, library_dirs=ext.library_dirs,
                                    runtime_library_dirs=ext.runtime_library_dirs, extra_postargs=link_args,
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
              "-ffp-contract=off", "-fno-math-errno",
              # No FP exception is ever read, so GCC may compute both sides of a select: without this,
              # a loop with `x != x ? x : y` or `c ? a : b * d` (af_expf, the sigmoid, clamps) stays
              # scalar wherever the ISA has no masked vector ops (AVX2, SSE2). Values are unchanged.
              "-fno-trapping-math"]
    cflags += ["-O0", "-g"] if debug else ["-O1", "-g"] if sanitize else ["-O3", "-DNDEBUG"]
    macros = [("AF_HAVE_STB", "1")] + BLAS.macros
    if os.environ.get("AFFECTFER_PORTABLE") != "1" and not debug:
        cflags.append("-march=native")
    else:
        macros.append(("AF_PORTABLE", "1"))
    cflags += sanitize
    stb = stb_dirs()
    macros.append(("AF_STB_NAME", '"stb_image %s"' % ".".join(map(str, stb_version(stb[0])))))
    cuda = cuda_config()
    if cuda:
        macros.append(("AF_HAVE_CUDA", "1"))
    ext = Extension("affectfer._C", sources=sources,
                    include_dirs=["csrc", numpy.get_include()] + BLAS.include + stb + (cuda["include_dirs"] if cuda else []),
                    library_dirs=[BLAS.libdir] if BLAS.libdir else [], libraries=[BLAS.library, "m"],
                    runtime_library_dirs=BLAS.rpath, define_macros=macros, extra_compile_args=cflags,
                    extra_link_args=["-fopenmp"] + sanitize)
    ext.cuda = cuda  # read by ParallelIncrementalBuild.build_extension
    return ext


setup(ext_modules=[extension()], install_requires=["numpy>=1.25", "tqdm>=4.60"] + BLAS.requires,
      cmdclass={"build_ext": ParallelIncrementalBuild, "sdist": SdistWithStb})
