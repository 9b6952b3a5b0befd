#!/usr/bin/env bash
# Proves portside's --gpus on a real NVIDIA GPU, on a machine with no internet.
#
# Run from the repository root, as root:   bash tests/gpu/device_check.sh
# Prints one "PASS <check>" or "FAIL <check>: <reason>" line per check, then a summary; exits 0
# only when every check passed. Every step runs under `timeout`; the whole run stays under
# 5 minutes (steps past the budget are reported as FAIL "skipped").
#
# Prepare beforehand, on a machine with a package index (the files travel with the tree):
#   python3 -m pip wheel --wheel-dir dist .          # portside and its dependencies as wheels
#   mkdir -p dist/debs && (cd dist/debs && apt-get download runc)   # only if the GPU host lacks runc
#
# Environment knobs: PORTSIDE_CHECK_VENV (default /tmp/portside-gpu-venv), STEP_TIMEOUT (seconds
# per container step, default 45), BUDGET (seconds for the whole run, default 290), PYTHON.
set -u -o pipefail

cd "$(dirname "$0")/../.." || exit 2
VENV=${PORTSIDE_CHECK_VENV:-/tmp/portside-gpu-venv}
STEP_TIMEOUT=${STEP_TIMEOUT:-45}
BUDGET=${BUDGET:-290}
PYTHON=${PYTHON:-python3}
IMAGE=gpu-busybox
NET=(--network none)        # networking is not what this script checks; keep it out of the way
export PORTSIDE_ROOT=${PORTSIDE_ROOT:-/tmp/portside-gpu-root}
WORK=$(mktemp -d /tmp/portside-gpu-check.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0
SECONDS=0

pass() { echo "PASS $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL $1: $2"; FAILED=$((FAILED + 1)); }
# One line of the last output of a step, for FAIL reasons.
tail1() { tr '\n' ' ' <"$1" | tail -c 300; }
# True while the time budget allows another step; otherwise reports the step as skipped.
in_budget() {
    if [ "$SECONDS" -ge "$BUDGET" ]; then
        fail "$1" "skipped: the ${BUDGET}s budget is spent"
        return 1
    fi
}
# Milliseconds since the epoch.
now_ms() { date +%s%3N; }
median3() { printf '%s\n' "$@" | sort -n | sed -n 2p; }

if [ "$(id -u)" -ne 0 ]; then
    echo "FAIL setup: run as root"
    exit 2
fi

# ---------------------------------------------------------------------------------------------
# setup: venv from carried wheels, runc from a carried .deb when missing
setup_ok=1
if in_budget "setup-venv"; then
    if timeout 120 "$PYTHON" -m venv --system-site-packages "$VENV" >"$WORK/venv.log" 2>&1 &&
        { timeout 120 "$VENV/bin/pip" install --no-index --find-links dist/ portside \
              >>"$WORK/venv.log" 2>&1 ||
          timeout 120 "$VENV/bin/pip" install --no-index --find-links dist/ --no-deps portside \
              >>"$WORK/venv.log" 2>&1; } &&
        [ -x "$VENV/bin/portside" ]; then
        pass "setup-venv"
    else
        fail "setup-venv" "$(tail1 "$WORK/venv.log")"
        setup_ok=0
    fi
fi
if ! command -v runc >/dev/null 2>&1 && ! command -v crun >/dev/null 2>&1; then
    if ls dist/debs/runc_*.deb >/dev/null 2>&1 &&
        timeout 60 dpkg -i dist/debs/runc_*.deb >"$WORK/dpkg.log" 2>&1; then
        pass "setup-runc"
    else
        fail "setup-runc" "no runc/crun and no usable dist/debs/runc_*.deb"
        setup_ok=0
    fi
fi
PS=("$VENV/bin/portside")

if ! command -v nvidia-smi >/dev/null 2>&1 || ! HOST_LIST=$(timeout 30 nvidia-smi -L); then
    fail "host-gpu" "nvidia-smi is missing or fails on the host"
    setup_ok=0
fi
HOST_GPUS=$(printf '%s\n' "${HOST_LIST:-}" | grep -c '^GPU ' || true)

if [ "$setup_ok" -eq 1 ] && in_budget "bootstrap"; then
    if timeout 120 "${PS[@]}" image bootstrap busybox -t "$IMAGE" >"$WORK/bootstrap.log" 2>&1; then
        pass "bootstrap ($IMAGE)"
    else
        fail "bootstrap" "$(tail1 "$WORK/bootstrap.log")"
        setup_ok=0
    fi
fi
if [ "$setup_ok" -ne 1 ]; then
    echo "SUMMARY passed=$PASSED failed=$FAILED (setup failed; container checks not run)"
    exit 1
fi

# The host's C library and loader: busybox-static images have no libc, and the driver's tools and
# libraries need one. They are mounted under /host and used through the host's loader.
NVSMI=$(command -v nvidia-smi)
LOADER=$(readlink -f "$(ldd "$NVSMI" | awk '/ld-linux/ {print $1; exit}')")
LIBC=$(readlink -f "$(ldd "$NVSMI" | awk '/libc\.so\.6/ {print $3; exit}')")
LIBC_DIR=$(dirname "$LIBC")
LOADER_DIR=$(dirname "$LOADER")
HOSTLIB=(-v "$LIBC_DIR:/host$LIBC_DIR:ro")
[ "$LOADER_DIR" != "$LIBC_DIR" ] && HOSTLIB+=(-v "$LOADER_DIR:/host$LOADER_DIR:ro")

# ---------------------------------------------------------------------------------------------
# 1. nvidia-smi -L inside a --gpus all container lists the host's GPUs
if in_budget "nvidia-smi"; then
    timeout "$STEP_TIMEOUT" "${PS[@]}" run --rm "${NET[@]}" --gpus all "$IMAGE" nvidia-smi -L \
        >"$WORK/smi.log" 2>&1
    if grep -q '^GPU 0:' "$WORK/smi.log"; then
        pass "nvidia-smi -L in --gpus all ($(grep -c '^GPU ' "$WORK/smi.log") GPUs)"
    else
        # Expected with a libc-less image: run the same tool through the host's loader.
        timeout "$STEP_TIMEOUT" "${PS[@]}" run --rm "${NET[@]}" --gpus all "${HOSTLIB[@]}" "$IMAGE" \
            "/host$LOADER" --library-path "/host$LIBC_DIR" /usr/bin/nvidia-smi -L \
            >"$WORK/smi2.log" 2>&1
        n=$(grep -c '^GPU ' "$WORK/smi2.log" || true)
        if [ "$n" -ge 1 ] && [ "$n" -eq "$HOST_GPUS" ]; then
            pass "nvidia-smi -L in --gpus all ($n GPUs, through the host loader)"
        else
            fail "nvidia-smi -L in --gpus all" "listed $n of $HOST_GPUS GPUs: $(tail1 "$WORK/smi2.log")"
        fi
    fi
fi

# ---------------------------------------------------------------------------------------------
# 2. device nodes: --gpus all has every GPU, --gpus 1 one, --gpus 0 none
count_gpus() {  # $1: --gpus value; prints the number of /dev/nvidiaN nodes the container sees
    timeout "$STEP_TIMEOUT" "${PS[@]}" run --rm "${NET[@]}" --gpus "$1" "$IMAGE" \
        sh -c 'ls -1 /dev | grep -c "^nvidia[0-9][0-9]*$"' 2>"$WORK/count.err" | tr -d '[:space:]'
}
if in_budget "device-counts"; then
    n_all=$(count_gpus all)
    n_one=$(count_gpus 1)
    n_zero=$(count_gpus 0)
    if [ "$n_all" = "$HOST_GPUS" ] && [ "$n_one" = "1" ] && [ "$n_zero" = "0" ]; then
        pass "device counts (all=$n_all, 1=$n_one, 0=$n_zero, host=$HOST_GPUS)"
    else
        fail "device counts" "all=$n_all (want $HOST_GPUS), 1=$n_one (want 1), 0=${n_zero:-?} (want 0): $(tail1 "$WORK/count.err")"
    fi
fi

# ---------------------------------------------------------------------------------------------
# 3. a CUDA matmul with the host's python + torch mounted read-only equals the host's result
MATMUL='import torch
torch.manual_seed(0)
a = torch.randn(512, 512, device="cuda", dtype=torch.float64)
b = torch.randn(512, 512, device="cuda", dtype=torch.float64)
print("RESULT", repr(float((a @ b).sum().item())), torch.cuda.device_count())'
if in_budget "torch-matmul"; then
    if ! timeout 120 "$PYTHON" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' \
            >/dev/null 2>&1; then
        fail "torch-matmul" "skipped: host $PYTHON has no torch with CUDA"
    else
        host_out=$(timeout 120 "$PYTHON" -c "$MATMUL" 2>&1 | grep '^RESULT')
        # Mount the folders the host interpreter needs under /host, read-only.
        mapfile -t PYINFO < <("$PYTHON" - <<'EOF'
import os, sys
import torch
dirs = {sys.base_prefix, sys.prefix, os.path.dirname(os.path.dirname(torch.__file__))}
dirs |= {p for p in sys.path if p and os.path.isdir(p)}
roots = []
for d in sorted(os.path.realpath(d) for d in dirs):
    if not any(d == r or d.startswith(r + "/") for r in roots):
        roots.append(d)
print(os.path.realpath(sys.executable))
print(os.path.realpath(sys.base_prefix))
print(":".join("/host" + os.path.realpath(p) for p in sys.path if p and os.path.isdir(p)))
for r in roots:
    print(r)
EOF
        )
        PYEXE=${PYINFO[0]}
        PYHOME=${PYINFO[1]}
        PYPATH=${PYINFO[2]}
        MOUNTS=("${HOSTLIB[@]}")
        for d in "${PYINFO[@]:3}"; do
            case "$d" in "$LIBC_DIR" | "$LOADER_DIR") continue ;; esac
            MOUNTS+=(-v "$d:/host$d:ro")
        done
        timeout 120 "${PS[@]}" run --rm "${NET[@]}" --gpus all --shm-size 1g "${MOUNTS[@]}" \
            -e "PYTHONHOME=/host$PYHOME" -e "PYTHONPATH=$PYPATH" "$IMAGE" \
            "/host$LOADER" --library-path "/host$LIBC_DIR" "/host$PYEXE" -c "$MATMUL" \
            >"$WORK/torch.log" 2>&1
        ctr_out=$(grep '^RESULT' "$WORK/torch.log")
        if [ -n "$host_out" ] && [ "$host_out" = "$ctr_out" ]; then
            pass "torch-matmul (container = host: ${ctr_out#RESULT })"
        elif [ -n "$ctr_out" ] && "$PYTHON" -c 'import sys, math
h, c = (float(x.split()[1]) for x in sys.argv[1:3])
sys.exit(0 if math.isclose(h, c, rel_tol=1e-9) else 1)' "$host_out" "$ctr_out" 2>/dev/null; then
            pass "torch-matmul (container ~ host within 1e-9: ${ctr_out#RESULT })"
        else
            fail "torch-matmul" "host '${host_out}' container '${ctr_out}': $(tail1 "$WORK/torch.log")"
        fi
    fi
fi

# ---------------------------------------------------------------------------------------------
# 4. start time of a GPU container against a CPU one (median of 3 each)
time_run() {  # prints milliseconds for one run, or "x" when it failed
    local t0 t1
    t0=$(now_ms)
    if timeout "$STEP_TIMEOUT" "${PS[@]}" run --rm "${NET[@]}" "$@" "$IMAGE" true \
            >>"$WORK/time.log" 2>&1; then
        t1=$(now_ms)
        echo $((t1 - t0))
    else
        echo x
    fi
}
if in_budget "start-time"; then
    cpu=() gpu=()
    for _ in 1 2 3; do
        cpu+=("$(time_run)")
        gpu+=("$(time_run --gpus all)")
    done
    if printf '%s\n' "${cpu[@]}" "${gpu[@]}" | grep -q x; then
        fail "start-time" "a run failed: $(tail1 "$WORK/time.log")"
    else
        c=$(median3 "${cpu[@]}")
        g=$(median3 "${gpu[@]}")
        # GPU setup adds device nodes and a few dozen bind mounts; it must not dominate start-up.
        if [ "$g" -le $((c * 3 + 500)) ]; then
            pass "start-time (cpu ${c} ms, gpu ${g} ms, +$((g - c)) ms)"
        else
            fail "start-time" "gpu ${g} ms vs cpu ${c} ms (allowed: 3x + 500 ms)"
        fi
    fi
fi

echo "SUMMARY passed=$PASSED failed=$FAILED in ${SECONDS}s"
[ "$FAILED" -eq 0 ]
