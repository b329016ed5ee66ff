#!/usr/bin/env python3
"""Runs the seed rotation function, unmodified, against a local Rotary server.

Rotary's `exec` trigger starts this script with the job's arguments as JSON on
stdin: secretId, jobToken, endpoint, and the trigger's default parameters
(accessKey, secretKey). The seed function calls the fixed host
https://secretmanager.apigw.ntruss.com; a requests transport adapter sends
those calls to `endpoint` instead. Nothing else about the function changes.

Test-only switches (command-line flags, never used by the seed itself):
  --kill-before NAME   SIGKILL this process when the seed calls function NAME
  --hang-before NAME   sleep forever when the seed calls function NAME
Default parameter `clockOffsetMs` (env): shifts time.time() for tests that
move the server's clock forward by days.
"""
import importlib.util
import json
import os
import signal
import sys
import time

import requests
from requests.adapters import HTTPAdapter

NCP = "https://secretmanager.apigw.ntruss.com"
HERE = os.path.dirname(os.path.abspath(__file__))
SEED = os.path.join(HERE, "..", "fixtures", "seed", "rotation_function.py")


class RedirectAdapter(HTTPAdapter):
    """Sends requests for the NCP host to the local server, path unchanged."""

    def __init__(self, endpoint):
        super().__init__()
        self.endpoint = endpoint.rstrip("/")

    def send(self, request, **kwargs):
        request.url = self.endpoint + request.url[len(NCP):]
        return super().send(request, **kwargs)


def main():
    args = json.load(sys.stdin)
    adapter = RedirectAdapter(args["endpoint"])
    original_init = requests.Session.__init__

    def init(self, *a, **kw):
        original_init(self, *a, **kw)
        self.mount(NCP, adapter)

    requests.Session.__init__ = init

    offset = int(os.environ.get("clockOffsetMs", "0")) / 1000.0
    if offset:
        real_time = time.time
        time.time = lambda: real_time() + offset

    spec = importlib.util.spec_from_file_location("rotation_function", SEED)
    seed = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(seed)

    argv = sys.argv[1:]
    for flag, action in (("--kill-before", "kill"), ("--hang-before", "hang")):
        if flag in argv:
            name = argv[argv.index(flag) + 1]

            def stop(*_a, _action=action, **_kw):
                sys.stdout.flush()
                if _action == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                while True:
                    time.sleep(3600)

            setattr(seed, name, stop)

    result = seed.main({
        "secretId": args["secretId"],
        "jobToken": args["jobToken"],
        "accessKey": args["accessKey"],
        "secretKey": args["secretKey"],
    })
    sys.exit(0 if result.get("done") else 1)


if __name__ == "__main__":
    main()
