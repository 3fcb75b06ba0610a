"""`orchard serve` as the teacher of the distillation tests: started on a free port, its stderr in a
log file, stopped with SIGTERM (then SIGKILL after 10 s). Standard library only."""
import signal
import subprocess
import time


def start(orchard, model, log_path, parallel):
    """Returns (process, port); port is None when the server did not start within 60 s."""
    log = open(log_path, "w+")
    serve = subprocess.Popen([orchard, "serve", "--model", model, "--port", "0", "--parallel", str(parallel)],
                             stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        log.seek(0)
        text = log.read()
        if "serving" in text and "http://" in text:
            return serve, int(text.split("http://", 1)[1].split(":", 1)[1].split()[0].split("/")[0])
        if serve.poll() is not None:
            break
        time.sleep(0.05)
    return serve, None


def stop(serve):
    serve.send_signal(signal.SIGTERM)
    try:
        serve.wait(10)
    except subprocess.TimeoutExpired:
        serve.kill()
