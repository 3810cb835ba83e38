#!/usr/bin/env bash
# Creates (or refreshes) the project's virtual environment: pinned dependencies from requirements.txt,
# Detectron2 (left alone when importable), and featsr_d2 itself in editable mode with its C++ extension.
# Idempotent: when nothing it depends on changed since the last successful run it only verifies imports.
set -euo pipefail

cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}
REQ=requirements.txt
STAMP="$VENV/.featsr_setup_stamp"

inputs_hash() {  # the MMDetection pins are tools/setup_mmdet.sh's: a change there rebuilds nothing here
    { grep -v -e '^#route:mmcv-sdist:' -e '^#route:mmdet:' "$REQ"
      cat setup.py pyproject.toml $(find csrc -type f | sort); } | sha256sum | cut -d' ' -f1
}

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating $VENV"
    "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"

want=$(inputs_hash)
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && "$VPY" -c "import detectron2, featsr_d2" >/dev/null 2>&1; then
    echo "[setup] $VENV is up to date"
    exit 0
fi

echo "[setup] installing pinned dependencies from $REQ"
"$VPY" -m pip install -q --disable-pip-version-check --upgrade pip
"$VPY" -m pip install -q --disable-pip-version-check -r "$REQ"

route_pin() {  # route_pin KIND -> the pin written after "#route:KIND:" in requirements.txt
    sed -n "s/^#route:$1:[[:space:]]*//p" "$REQ"
}

if "$VPY" -c "import detectron2" >/dev/null 2>&1; then
    echo "[setup] detectron2 already importable: left alone"
else
    pin=$(route_pin detectron2)
    purelib=$("$VPY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
    echo "[setup] installing detectron2 from $pin (Python sources; see ENVIRONMENT notes in README)"
    "$VPY" -m pip install -q --disable-pip-version-check --no-deps --only-binary=:all: \
        --python-version 3.10 --upgrade --target "$purelib" "$pin"
fi

for pin in $(route_pin nodeps); do
    "$VPY" -m pip install -q --disable-pip-version-check --no-deps "$pin"
done

echo "[setup] installing featsr_d2 (editable, builds featsr_d2._C)"
"$VPY" -m pip install -q --disable-pip-version-check --no-build-isolation --no-deps -e .

"$VPY" -c "import detectron2, featsr_d2; print('[setup] detectron2', detectron2.__version__, '| featsr_d2', featsr_d2.__version__, '| compiled ops:', featsr_d2.build_info())"
echo "$want" > "$STAMP"
