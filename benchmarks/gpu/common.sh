# Sourced by the GPU runs in this folder: carried wheels (.whl, if any) installed and on the path,
# the repository importable, $PY the interpreter, and `machine` printing the GPU and the commit.
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

machine() {
  nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo "no GPU"
  git log -1 --format='commit %h %s' 2>/dev/null || true
}
