"""The C++ trainer and the PyTorch reference must agree on the parameter table (names, shapes, order) and on
the learning-rate schedules: compares `dev/test_host --dump` with dev/model_ref.py and dev/optim_ref.py.
  python3 dev/test_host.py [./dev/test_host]
"""
import json
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from model_ref import Config, param_table  # noqa: E402
from optim_ref import lr_schedule  # noqa: E402
from checks import Checks  # noqa: E402

CHECKS = Checks("host")
check = CHECKS.check


def main(argv):
    exe = argv[0] if argv else os.path.join(HERE, "test_host")
    p = subprocess.run([exe, "--dump"], capture_output=True, text=True)
    if p.returncode != 0:
        check("test_host --dump runs", False, p.stderr.strip()[-300:])
        sys.exit(1)
    d = json.loads(p.stdout)
    for variant in ("parallax", "softmax"):
        ours = [(n, tuple(s)) for n, s in d["tables"][variant]]
        ref = [(n, tuple(s)) for n, s in param_table(Config(variant=variant))]
        check(f"parameter table of d12 {variant} equals the reference's", ours == ref, f"{len(ours)} tensors")
    # --mlp-hidden match: the reference's softmax with F = 4C + C/2 has Parallax's parameters but the r gain's
    C = Config().width
    ours = [(n, tuple(s)) for n, s in d["tables"]["softmax_match"]]
    matched = param_table(Config(variant="softmax", mlp_hidden=4 * C + C // 2))
    check("parameter table of d12 softmax with --mlp-hidden match equals the reference's at F = 4C + C/2",
          ours == [(n, tuple(s)) for n, s in matched], f"fc_w {dict(ours).get('fc_w')}")
    numel = {v: sum(math.prod(s) for _, s in d["tables"][v]) for v in ("parallax", "softmax", "softmax_match")}
    r_gain = math.prod(dict(param_table(Config(variant="parallax")))["r_gain"])
    check("--mlp-hidden match: softmax has Parallax's parameter count less the r gain",
          numel["parallax"] - numel["softmax_match"] == r_gain,
          f"parallax {numel['parallax']:,}, softmax {numel['softmax']:,}, matched {numel['softmax_match']:,}, "
          f"r gain {r_gain}")
    for kind in ("wsd", "cosine"):
        ours = d["schedules"][kind]
        ref = [lr_schedule(s, 100, 10, 0.3, kind) for s in range(100)]
        worst = max(abs(a - b) for a, b in zip(ours, ref))
        check(f"{kind} schedule equals the reference's (100 steps, 10 warmup)", worst < 1e-6, f"max diff {worst:.1e}")
    CHECKS.exit()


if __name__ == "__main__":
    main(sys.argv[1:])
