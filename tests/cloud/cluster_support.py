"""What the tests of the private cloud node and of the router share: a check that records its
failures, a free loopback port, and a local cluster (nginx and nodes, deploy/local_cluster.sh)
started and stopped. Python 3 standard library only."""
import os
import socket
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
failures = []


def check(ok, what):
    print(("ok   " if ok else "FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster(orchard, cluster, model, nodes, node_args, env=None):
    """Starts the cluster in `cluster` and returns its cluster.env as a dict (RELAY, CA, NODE_PIDS,
    NODE_PORTS, ADMIN_PORTS, NGINX_PID); exits the test when it does not start."""
    start = subprocess.run(["bash", os.path.join(ROOT, "deploy/local_cluster.sh"), "start", cluster, "--model", model,
                            "--nodes", str(nodes), "--port", str(free_port()), "--", *node_args],
                           env=dict(os.environ, ORCHARD=orchard, **(env or {})), capture_output=True, text=True,
                           timeout=300)
    if start.returncode != 0:
        print(start.stdout, start.stderr)
        sys.exit("could not start the cluster")
    conf = {}
    for line in open(os.path.join(cluster, "cluster.env")):
        key, _, value = line.strip().partition("=")
        conf[key] = value.strip('"')
    return conf


def stop_cluster(cluster):
    subprocess.run(["bash", os.path.join(ROOT, "deploy/local_cluster.sh"), "stop", cluster], timeout=60)
