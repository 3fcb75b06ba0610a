"""Starts `orchard serve` for the benchmark scripts: on a free port, its stderr drained."""
import re
import subprocess
import sys
import threading


def start_server(orchard, model, *args):
    """Returns (process, port) once the server listens; exits if it does not start."""
    server = subprocess.Popen([orchard, "serve", "--model", model, "--port", "0", *args],
                              stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        m = re.search(r"http://[^:]+:(\d+)", line)
        if m:
            threading.Thread(target=lambda: [None for _ in server.stderr], daemon=True).start()
            return server, int(m.group(1))
    sys.exit("orchard serve did not start")
