"""Builds affectfer._C from csrc/.

Every .c file under csrc/ is compiled (in parallel, and only when it or a header changed), against
the NumPy C API and a CBLAS. Environment:
  OPENBLAS_INCLUDE_DIR / OPENBLAS_LIB_DIR   where cblas.h and libopenblas are (default: the system's)
  STB_INCLUDE_DIR                           where stb_image.h is (default: build/stb, /usr/include/stb)
  AFFECTFER_PORTABLE=1                      no -march=native (for wheels built on one machine, run on others)
  AFFECTFER_DEBUG=1                         -O0 -g, assertions on
  AFFECTFER_SANITIZE=1                      AddressSanitizer + UndefinedBehaviorSanitizer, -O1 -g, assertions
                                            on (`make test-asan` builds this way into build/asan/)
  AFFECTFER_CUDA=1 / =0                     force / refuse the CUDA build (default: built when nvcc is found)
  CUDA_HOME, NVCC                           where the CUDA toolkit / nvcc is
  AFFECTFER_CUDA_ARCH                       nvcc -gencode list (default: sm_90 code plus compute_90 PTX)
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
        cuda = getattr(ext, "cuda", None)
        if cuda:
            objects += compile_cuda(cuda, self.build_temp, newest_header)
        ext_path = self.get_ext_fullpath(ext.name)
        os.makedirs(os.path.dirname(ext_path), exist_ok=True)
        link_args = ext.extra_link_args + (cuda["link_args"] if cuda else [])
        compiler.link_shared_object(objects, ext_path, libraries=ext.libraries, library_dirs=ext.library_dirs,
                                    extra_postargs=link_args, export_symbols=self.get_export_symbols(ext),
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
    cuda = cuda_config()
    if cuda:
        macros.append(("AF_HAVE_CUDA", "1"))
    ext = Extension("affectfer._C", sources=sources,
                    include_dirs=["csrc", numpy.get_include()] + blas_inc + stb + (cuda["include_dirs"] if cuda else []),
                    library_dirs=blas_lib, libraries=["openblas", "m"], define_macros=macros,
                    extra_compile_args=cflags, extra_link_args=["-fopenmp"] + sanitize)
    ext.cuda = cuda  # read by ParallelIncrementalBuild.build_extension
    return ext


setup(ext_modules=[extension()], cmdclass={"build_ext": ParallelIncrementalBuild})
