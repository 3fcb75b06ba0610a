#!/usr/bin/env python3
"""The C API's example program (examples/c/generate.c) generates llama2.c's greedy stories260K
continuations exactly (expected_generation.json, four prompts, BOS).

    c_example_test.py EXAMPLE_BINARY SHARED_DIR
"""
import json
import subprocess
import sys
from pathlib import Path


def main():
    example, shared = sys.argv[1], Path(sys.argv[2])
    model = shared / "models/stories260K/stories260K.gguf"
    cases = json.loads((shared / "models/stories260K/expected_generation.json").read_text())["cases"]
    assert len(cases) == 4
    failures = 0
    for case in cases:
        run = subprocess.run([example, str(model), case["prompt"], str(case["generated_tokens"])],
                             capture_output=True, timeout=120)
        out = run.stdout.decode("utf-8")
        if run.returncode != 0 or out != case["expected_continuation"] + "\n":
            failures += 1
            print(f"FAIL {case['prompt']!r}: exit {run.returncode}\nstdout: {out!r}\nexpected: "
                  f"{case['expected_continuation'] + chr(10)!r}\nstderr: {run.stderr.decode(errors='replace')}")
        else:
            print(f"ok   {case['prompt']!r}: {case['generated_tokens']} tokens")
    # Errors are reported with the C API's text and exit code 1.
    run = subprocess.run([example, "/nonexistent/model.gguf", "x"], capture_output=True, timeout=60)
    err = run.stderr.decode()
    if run.returncode != 1 or "ORCHARD_ERR_NOT_FOUND" not in err or "/nonexistent/model.gguf" not in err:
        failures += 1
        print(f"FAIL missing model: exit {run.returncode}, stderr {err!r}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
