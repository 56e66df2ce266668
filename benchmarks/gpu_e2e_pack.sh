#!/usr/bin/env bash
# Wheels that benchmarks/gpu_e2e.py needs on a GPU machine without network (issue #17 part 3).
#
# The device image has Python 3.12, torch, transformers, accelerate, peft, tokenizers, safetensors, pyyaml, sympy,
# matplotlib, pandas, pyarrow, xxhash, psutil, ninja, py-cpuinfo, msgpack, einops, nvidia-ml-py, click, requests,
# protobuf, filelock (/work/.library/device/KINDS.md); this brings the rest: TRL, datasets, math-verify, Ray and
# DeepSpeed with the dependencies the image lacks, pinned to the versions the CPU tests run with.
#
#   bash benchmarks/gpu_e2e_pack.sh              # here, where pip reaches PyPI: fills .whl/ (git-ignored)
#   device run, carry [".whl"], one call:
#       bash benchmarks/gpu_e2e_pack.sh --install && export PYTHONPATH=/tmp/site:$PWD \
#           && PYTHONUNBUFFERED=1 python3 benchmarks/gpu_e2e.py | tee $OUT/gpu_e2e.jsonl
#
# A call carries 64 MiB in all, the repository (≈ 14 MB) included, so splitting Ray's 79 MB wheel into parts would
# not get it there in one call. Instead the wheel is slimmed: its Java jar (32 MB, only for Ray's cross-language
# Java workers) and the dashboard's source map are dropped, RECORD is rewritten to match, and the rest is
# recompressed with LZMA (pip installs any zip that Python's zipfile reads). What is left is checked below.
# DeepSpeed publishes only a source archive: it is built here into a pure-Python wheel (DS_BUILD_OPS=0; its CUDA
# ops compile on first use, and ZeRO-3 with a torch optimizer needs none).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--install" ]; then  # on the GPU machine
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    exit
fi

PY=${PYTHON:-python3}
exclude=$(git rev-parse --git-path info/exclude)
grep -qx '/.whl/' "$exclude" 2>/dev/null || echo '/.whl/' >> "$exclude"
rm -rf .whl && mkdir -p .whl /tmp/gpu_e2e_pack
download() {
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$@"
}
# the trainer: TRL, datasets (+ dill, multiprocess), the math reward
download .whl trl==1.16.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 math-verify==0.9.0 \
    latex2sympy2_extended==1.11.0 antlr4-python3-runtime==4.13.2
# Ray's dependencies the image lacks (jsonschema and its helpers)
download .whl jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1
# DeepSpeed's dependencies the image lacks (pydantic and hjson)
download .whl hjson==3.1.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
# DeepSpeed: built from its source archive without ops
"$PY" -m pip download -q --no-deps --no-binary=:all: -d /tmp/gpu_e2e_pack deepspeed==0.19.8
DS_BUILD_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation -w .whl /tmp/gpu_e2e_pack/deepspeed-0.19.8.tar.gz
# Ray, slimmed
download /tmp/gpu_e2e_pack ray==2.60.0
"$PY" - /tmp/gpu_e2e_pack/ray-2.60.0-cp312-cp312-manylinux2014_x86_64.whl .whl <<'EOF'
import sys, zipfile
from pathlib import Path

source, folder = Path(sys.argv[1]), Path(sys.argv[2])
drop = lambda name: name.startswith("ray/jars/") or name.endswith(".js.map")  # noqa: E731
with zipfile.ZipFile(source) as original, zipfile.ZipFile(folder / source.name, "w", zipfile.ZIP_LZMA) as slim:
    for info in original.infolist():
        if drop(info.filename):
            continue
        data = original.read(info)
        if info.filename.endswith(".dist-info/RECORD"):
            kept = [line for line in data.decode().splitlines() if not drop(line.split(",")[0])]
            data = ("\n".join(kept) + "\n").encode()
        info.compress_type = zipfile.ZIP_LZMA
        slim.writestr(info, data)
print(f"ray: {source.stat().st_size / 1e6:.1f} MB -> {(folder / source.name).stat().st_size / 1e6:.1f} MB")
EOF
du -sh .whl
total=$(( $(du -sb .whl | cut -f1) + $(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1) ))
echo "wheels + tracked files: $(( total / 1048576 )) MiB of the 64 MiB a call carries"
[ "$total" -lt $(( 64 * 1048576 )) ] || { echo "too large for one call" >&2; exit 1; }
