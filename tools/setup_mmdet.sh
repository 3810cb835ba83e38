#!/usr/bin/env bash
# Installs the pinned MMDetection 3.x stack (mmcv with compiled ops, mmengine, mmdet and their
# pure-Python companions) into the project's virtual environment; run after tools/setup_env.sh.
#
# The pins are the "#route:mmcv-sdist:" and "#route:mmdet:" lines of requirements.txt. The package
# index has no mmcv wheel with compiled ops for our torch, so mmcv's sdist is built once, with its
# C++ standard flags patched to c++20 (torch >= 2.14's headers need C++20), into a wheel cache outside
# the clone: ${FEATSR_CACHE:-~/.cache/featsr_d2}/wheels/, in a folder named for mmcv, torch, Python,
# platform, ops flavour and patch, so that a later set-up (a fresh .venv, another clone) installs it
# in seconds and a different torch never reuses a wrong wheel. MAX_JOBS (default: the number of
# cores) sets the compile jobs.
#
# Idempotent: when nothing it depends on changed since the last success it only verifies the stack.
# It never stops `make test`: on failure it says why and where the log is, writes the reason to
# $VENV/.featsr_mmdet_status (tests/mmdet fail with it) and exits 0. On success that file says "ok".
# No `set -e`: every step that can fail is checked and named; an unforeseen exit is turned into a
# status by the EXIT trap.
set -uo pipefail

SELF="$(cd "$(dirname "$0")" && pwd)/$(basename "$0")"
cd "$(dirname "$0")/.." || exit 1
VENV=${VENV:-.venv}
REQ=requirements.txt
CACHE=${FEATSR_CACHE:-$HOME/.cache/featsr_d2}
WHEELS="$CACHE/wheels"
# The one change made to mmcv's setup.py: every C++ standard flag (-std=c++14, -std=c++17 and their
# MSVC forms) becomes C++20. Its hash is part of the cached wheel's identity.
MMCV_PATCH='s/std([=:])c\+\+1[47]/std\1c++20/g'

say() { echo "[setup-mmdet] $*"; }

write_status() {  # atomically, so that a reader never sees half a line
    printf '%s\n' "$@" > "$STATUS.tmp" && mv -f "$STATUS.tmp" "$STATUS"
}

TMP=""
TICKER=""
STATUS=""  # set once the venv is known; until then a failure is only printed
LOG=""
cleanup() {
    local rc=$?
    if [ -n "$TICKER" ]; then kill "$TICKER" 2>/dev/null; wait "$TICKER" 2>/dev/null; fi
    if [ -n "$TMP" ]; then rm -rf "$TMP"; fi
    if [ "$rc" -ne 0 ] && [ "$rc" -ne 130 ] && [ "$rc" -ne 143 ]; then  # not an interruption
        say "FAILED: unexpected exit $rc of tools/setup_mmdet.sh"
        if [ -n "$STATUS" ]; then
            write_status "failed: unexpected exit $rc of tools/setup_mmdet.sh" "log: $LOG" \
                "retry: make setup-mmdet"
        fi
        exit 0
    fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {  # fail REASON [LOG]: say it, keep it for the tests, and let `make test` go on
    local log=${2:-$LOG}
    say "FAILED: $1"
    if [ -n "$log" ] && [ -s "$log" ]; then
        say "first errors and last lines of $log:"
        if [ "$(wc -l < "$log")" -gt 30 ]; then
            { grep -i -m 5 'error:' "$log"; echo "..."; tail -n 15 "$log"; } | sed 's/^/    /'
        else
            sed 's/^/    /' "$log"
        fi
    fi
    say "the MMDetection tests (tests/mmdet) will fail with this reason; retry: make setup-mmdet"
    if [ -n "$STATUS" ]; then
        write_status "failed: $1" "log: $log" "retry: make setup-mmdet"
    fi
    exit 0
}

run() {  # run CMD...: its output goes to the log
    echo "+ $*" >> "$LOG"
    "$@" >> "$LOG" 2>&1
}

route_pins() {  # route_pins KIND -> the requirements written after "#route:KIND:" in requirements.txt
    sed -n "s/^#route:$1:[[:space:]]*//p" "$REQ"
}

[ -x "$VENV/bin/python" ] || fail "$VENV/bin/python does not exist: run make setup first (tools/setup_env.sh)"
VENV=$(cd "$VENV" && pwd)  # absolute: the build runs elsewhere, and messages name full paths
VPY="$VENV/bin/python"
STAMP="$VENV/.featsr_mmdet_stamp"
STATUS="$VENV/.featsr_mmdet_status"
LOG="$VENV/.featsr_mmdet_setup.log"
BUILD_LOG="$VENV/.featsr_mmdet_build.log"
: > "$LOG"

# --- what to install, and the identity of the mmcv wheel --------------------------------------------
MMCV_REQ=$(route_pins mmcv-sdist)
MMCV_PIN=${MMCV_REQ%% *}          # mmcv==2.1.0
MMCV_VERSION=${MMCV_PIN#mmcv==}
read -r -a MMDET_PINS <<< "$(route_pins mmdet | tr '\n' ' ')"
if [[ "$MMCV_PIN" != mmcv==* ]] || [ -z "$MMCV_VERSION" ] || [ "${#MMDET_PINS[@]}" -eq 0 ]; then
    fail "requirements.txt lacks the '#route:mmcv-sdist: mmcv==X' line or the '#route:mmdet:' lines"
fi

# torch version, Python tag, platform and ops flavour (mmcv's setup.py compiles CUDA kernels when
# torch sees a GPU or FORCE_CUDA=1), from the venv's own interpreter.
identity=$("$VPY" - 2>>"$LOG" <<'EOF'
import os, sys, sysconfig
import torch
cuda = torch.cuda.is_available() or os.environ.get("FORCE_CUDA", "0") == "1"
platform = sysconfig.get_platform().replace("-", "_").replace(".", "_")
print(f"torch-{torch.__version__}-cp{sys.version_info[0]}{sys.version_info[1]}-{platform}-"
      f"{'cuda' if cuda else 'cpu'}")
EOF
) || fail "torch is not importable in $VENV: run make setup first (tools/setup_env.sh)"
patch_hash=$(printf '%s' "$MMCV_PATCH" | sha256sum | cut -c1-12)
WHEEL_DIR="$WHEELS/mmcv-$MMCV_VERSION/$identity-cxx20patch-$patch_hash"

want=$( { route_pins mmcv-sdist; route_pins mmdet; echo "$WHEEL_DIR"; cat "$SELF"; } | sha256sum | cut -d' ' -f1)

verify() {  # imports the stack, checks the pinned versions, runs roi_align and nms on CPU
    PINS="$MMCV_PIN ${MMDET_PINS[*]}" OMP_NUM_THREADS=1 "$VPY" - <<'EOF'
import os
from importlib.metadata import version

import mmcv
import mmdet
import mmengine
import torch
from mmcv.ops import nms, roi_align

for pin in os.environ["PINS"].split():
    name, pinned = pin.split("==")
    assert version(name) == pinned, f"{name} {version(name)} is installed, requirements.txt pins {pinned}"
feat = torch.arange(32, dtype=torch.float32).reshape(1, 2, 4, 4)
rois = torch.tensor([[0.0, 1.0, 1.0, 3.0, 3.0]])
out = roi_align(feat, rois, (1, 1), 1.0, 2, "avg", True)  # the 2x2 box centred on pixel (1.5, 1.5)
assert torch.allclose(out.flatten(), torch.tensor([7.5, 23.5])), out
boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [1.0, 1.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])
_, keep = nms(boxes, torch.tensor([0.9, 0.8, 0.7]), 0.5)
assert keep.tolist() == [0, 2], keep
print(f"mmcv {mmcv.__version__} (compiled ops), mmengine {mmengine.__version__}, "
      f"mmdet {mmdet.__version__}, torch {torch.__version__}")
EOF
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] && versions=$(verify 2>>"$LOG"); then
    say "$VENV has the MMDetection stack: $versions"
    write_status "ok: $versions" "wheel: $WHEEL_DIR"
    exit 0
fi
rm -f "$STAMP"
write_status "failed: tools/setup_mmdet.sh started at $(date '+%F %T') and did not finish" \
    "log: $LOG" "retry: make setup-mmdet"

# --- the mmcv wheel: from the cache, or built once into it ----------------------------------------
cached_wheel() {  # the wheel in its cache folder, if any (the folder appears only complete)
    compgen -G "$WHEEL_DIR/mmcv-$MMCV_VERSION-*.whl" | head -n 1 || true
}

build_wheel() {
    mkdir -p "$WHEELS/mmcv-$MMCV_VERSION" || fail "cannot create the wheel cache $WHEELS"
    # Temporaries of builds killed a day ago or more (never a running build's).
    find "$WHEELS/mmcv-$MMCV_VERSION" -maxdepth 1 -name '.featsr-tmp-*' -mmin +1440 \
        -exec rm -rf {} + 2>/dev/null || true
    # Built beside its final place and renamed there when complete: no half wheel is ever visible.
    TMP=$(mktemp -d "$WHEELS/mmcv-$MMCV_VERSION/.featsr-tmp-XXXXXX") \
        || fail "cannot create a temporary folder in $WHEELS"
    mkdir -p "$TMP/out" "$TMP/sdist" "$TMP/src"

    say "downloading the $MMCV_PIN sdist (hash-checked)"
    printf '%s\n' "$MMCV_REQ" > "$TMP/sdist.txt"
    # --no-build-isolation: an isolated build environment gets a setuptools without pkg_resources,
    # which mmcv's setup.py imports.
    if ! run "$VPY" -m pip download -q --disable-pip-version-check --no-deps --no-build-isolation \
            --no-binary :all: --require-hashes -r "$TMP/sdist.txt" -d "$TMP/sdist"; then
        if grep -q "DO NOT MATCH THE HASHES" "$LOG"; then
            fail "the downloaded $MMCV_PIN sdist does not match the hash pinned in requirements.txt"
        fi
        fail "could not download the $MMCV_PIN sdist from the package index (no network to it?)"
    fi
    run tar -xzf "$TMP/sdist/mmcv-$MMCV_VERSION.tar.gz" -C "$TMP/src" \
        || fail "could not unpack $TMP/sdist/mmcv-$MMCV_VERSION.tar.gz"
    local src="$TMP/src/mmcv-$MMCV_VERSION"

    local before after
    before=$(grep -Ec 'std[=:]c\+\+1[47]' "$src/setup.py" || true)
    cp "$src/setup.py" "$TMP/setup.py.orig"
    sed -E -i "$MMCV_PATCH" "$src/setup.py"
    after=$(grep -Ec 'std[=:]c\+\+1[47]' "$src/setup.py" || true)
    if [ "$before" -eq 0 ] || [ "$after" -ne 0 ] \
        || ! grep -q "'-std=c++20'" "$src/setup.py"; then
        fail "the C++20 patch did not apply to mmcv $MMCV_VERSION's setup.py ($before lines with -std=c++14/17 before, $after after): its build flags changed; see tools/setup_mmdet.sh"
    fi
    { echo "patch ($MMCV_PATCH, hash $patch_hash) of mmcv $MMCV_VERSION's setup.py:"
      diff -u "$TMP/setup.py.orig" "$src/setup.py"; } > "$TMP/out/patch.diff"
    say "patched mmcv's setup.py: $before lines with -std=c++14/17 now say c++20 ($WHEEL_DIR/patch.diff)"

    local jobs=${MAX_JOBS:-$(nproc)}
    say "building mmcv $MMCV_VERSION with compiled ops ($identity, MAX_JOBS=$jobs): about 10-20 minutes on 2 cores, once"
    say "build log: $BUILD_LOG (kept beside the wheel once built)"
    (   # progress, once a minute, from ninja's [done/total] lines; stopped with its sleep
        start=$SECONDS
        nap=""
        trap '[ -n "$nap" ] && kill "$nap" 2>/dev/null; exit 0' TERM
        while :; do
            sleep 60 >/dev/null 2>&1 &
            nap=$!
            wait "$nap"
            step=$(grep -o '\[[0-9]*/[0-9]*\]' "$BUILD_LOG" 2>/dev/null | tail -n 1)
            echo "[setup-mmdet] ... building mmcv: $(( (SECONDS - start) / 60 )) min, compiled ${step:-[starting]}"
        done
    ) &
    TICKER=$!
    local t0=$SECONDS
    if ! (cd "$src" && PATH="$VENV/bin:$PATH" MMCV_WITH_OPS=1 MAX_JOBS=$jobs \
            "$VPY" -m pip wheel -v --disable-pip-version-check --no-deps \
            --no-build-isolation -w "$TMP/out" . > "$BUILD_LOG" 2>&1); then
        fail "building the mmcv $MMCV_VERSION wheel failed (compiler or build error); build log: $BUILD_LOG" "$BUILD_LOG"
    fi
    kill "$TICKER" 2>/dev/null; wait "$TICKER" 2>/dev/null; TICKER=""
    local wheel
    wheel=$(compgen -G "$TMP/out/mmcv-$MMCV_VERSION-*.whl" | head -n 1 || true)
    [ -n "$wheel" ] || fail "the mmcv build produced no wheel; build log: $BUILD_LOG" "$BUILD_LOG"
    "$VPY" -c 'import sys, zipfile; sys.exit(not any(n.startswith("mmcv/_ext") and n.endswith(".so") for n in zipfile.ZipFile(sys.argv[1]).namelist()))' "$wheel" \
        || fail "the mmcv wheel $wheel has no compiled ops (mmcv/_ext*.so); build log: $BUILD_LOG" "$BUILD_LOG"
    cp "$BUILD_LOG" "$TMP/out/build.log"
    say "built $(basename "$wheel") in $(( (SECONDS - t0) / 60 )) min $(( (SECONDS - t0) % 60 )) s"
    # rename(2): atomic. Another set-up that finished first keeps its (equal) wheel.
    mv -T "$TMP/out" "$WHEEL_DIR" 2>/dev/null || [ -n "$(cached_wheel)" ] \
        || fail "could not move the built wheel into $WHEEL_DIR"
    rm -rf "$TMP"; TMP=""
}

WHEEL=$(cached_wheel)
if [ -n "$WHEEL" ]; then
    say "reusing the cached mmcv wheel $WHEEL"
else
    build_wheel
    WHEEL=$(cached_wheel)
fi

# --- install and verify -----------------------------------------------------------------------------
# Everything with --no-deps: mmengine's metadata pulls opencv-python, which would clash with
# opencv-python-headless; the check below proves every requirement they declare is met. The wheel is
# reinstalled by force: a mmcv of the same version built against another torch may be installed.
say "installing $(basename "$WHEEL") and ${MMDET_PINS[*]}"
run "$VPY" -m pip install -q --disable-pip-version-check --no-deps --force-reinstall "$WHEEL" \
    || fail "could not install $WHEEL"
run "$VPY" -m pip install -q --disable-pip-version-check --no-deps "${MMDET_PINS[@]}" \
    || fail "could not install ${MMDET_PINS[*]} from the package index (network?)"

unmet=$(NAMES="mmcv ${MMDET_PINS[*]}" "$VPY" - 2>>"$LOG" <<'EOF'
# Every requirement the stack declares is installed (pip check, limited to these packages, with
# opencv-python satisfied by opencv-python-headless).
import os
from importlib.metadata import PackageNotFoundError, requires, version

from packaging.requirements import Requirement

ALIASES = {"opencv-python": "opencv-python-headless"}
for name in os.environ["NAMES"].split():
    name = name.split("==")[0]
    for spec in requires(name) or []:
        req = Requirement(spec)
        if req.marker is not None and not req.marker.evaluate({"extra": ""}):
            continue
        dist = ALIASES.get(req.name.lower(), req.name)
        try:
            have = version(dist)
        except PackageNotFoundError:
            print(f"{name} needs {spec}: {dist} is not installed")
            continue
        if not req.specifier.contains(have, prereleases=True):
            print(f"{name} needs {spec}: {dist} {have} is installed")
EOF
) || fail "could not check the stack's declared requirements"
[ -z "$unmet" ] || fail "unmet requirements: $(echo "$unmet" | paste -sd ';' -)"

versions=$(verify 2>>"$LOG") \
    || fail "the installed stack does not import or its ops fail on CPU (see the log)"
say "$versions"
write_status "ok: $versions" "wheel: $WHEEL_DIR"
echo "$want" > "$STAMP"
