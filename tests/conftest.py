import os

# The test models are tiny: one intra-op thread is faster than two and keeps CPU results
# bitwise reproducible whatever the machine's core count (set before anything imports torch;
# subprocesses the tests start inherit it).
os.environ.setdefault("OMP_NUM_THREADS", "1")
