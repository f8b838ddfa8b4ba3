"""Installs ONNX Runtime's shared library where the platform's services find it, from the pinned
`onnxruntime` wheel on PyPI, fetched by pip (which checks it against the index's hash).

    python3 scripts/install-onnxruntime.py DIR

Downloads the wheel for this machine with `pip download --no-deps` (nothing is installed into
any Python) and extracts `onnxruntime/capi/libonnxruntime.so.VERSION` to
`DIR/libonnxruntime.so.VERSION`, with `DIR/libonnxruntime.so` pointing at it. With DIR =
`target/onnxruntime`, services run from `target/debug/` or `target/release/` find it there
(`../onnxruntime/libonnxruntime.so` beside their executable); `MLOPS_ONNXRUNTIME` overrides.
Does nothing when the library is already there.
"""

import os
import subprocess
import sys
import tempfile
import zipfile

# The ONNX Runtime the `ort` crate's `api-31` feature is built for (Cargo.toml); keep both in step.
VERSION = "1.31.1"


def download_wheel(into):
    """The path of the onnxruntime wheel for this machine and Python, downloaded into `into`."""
    python = sys.executable
    if subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode != 0:
        # A Python without pip (Debian's, say): a throwaway venv brings its own.
        subprocess.run([python, "-m", "venv", os.path.join(into, "venv")], check=True)
        python = os.path.join(into, "venv", "bin", "python")
    subprocess.run(
        [python, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
         "--dest", into, f"onnxruntime=={VERSION}"],
        check=True,
    )
    wheels = [f for f in os.listdir(into) if f.startswith(f"onnxruntime-{VERSION}-") and f.endswith(".whl")]
    if not wheels:
        sys.exit(f"pip downloaded no onnxruntime {VERSION} wheel: set MLOPS_ONNXRUNTIME to a libonnxruntime.so")
    return os.path.join(into, wheels[0])


def main():
    out = sys.argv[1]
    library = os.path.join(out, f"libonnxruntime.so.{VERSION}")
    link = os.path.join(out, "libonnxruntime.so")
    if not os.path.exists(library):
        os.makedirs(out, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=out) as tmp:
            wheel = download_wheel(tmp)
            member = f"onnxruntime/capi/libonnxruntime.so.{VERSION}"
            with zipfile.ZipFile(wheel) as z, open(library + ".part", "wb") as f:
                f.write(z.read(member))
        os.replace(library + ".part", library)
        print(f"installed ONNX Runtime {VERSION} from {os.path.basename(wheel)} into {library}")
    if os.path.islink(link) or os.path.exists(link):
        os.remove(link)
    os.symlink(os.path.basename(library), link)


if __name__ == "__main__":
    main()
