"""How fast the platform API answers, next to a minimal Flask route served the same way.

In one run, on loopback:

1. builds an SQLite database of 1,000,000 subjects (half given Facebook matching, a quarter
   withdrawn, a quarter never asked) with bulk inserts of precomputed rows;
2. serves the app with gunicorn, and with the same gunicorn settings (by default the
   project's on SQLite: single-threaded sync workers; ``--threads N`` for gthread workers of N
   threads; preloaded and frozen before the fork as gunicorn.conf.py does: ``--workers`` and
   ``--threads``):

   - a minimal Flask route (a JSON answer, nothing else): what Flask and gunicorn cost;
   - the "floor" (:data:`FLOOR_APP`): a route that does only what any check must, with the
     parts it cannot do without: Flask, two indexed reads through the driver's cursor on a
     connection of SQLAlchemy's pool (the bearer token's and the subject's) and one Ed25519
     JWS (joserfc), and no rate-limit library, no log line, no metrics. It bounds what the
     real check can reach;
   - the first floor, the same route behind a Flask-Limiter limit (:data:`LIMITER_FLOOR_APP`),
     kept as a line of its own: Flask-Limiter's bookkeeping was found to cost more per request
     than the reads and the signature together, so it is no floor, and the difference between
     the two lines is what it costs;

3. loads ``POST /api/v1/consents/check`` and each of the three routes with ``wrk`` (Debian's
   package; without it, a bounded Python load generator on the same cores), in rounds that
   alternate between them, and prints requests per second, p50 and p99 latency and the
   server's CPU time per request of each, their medians over the rounds, and the median
   ratios ``check / minimal``, ``check / floor``, ``floor / minimal``, and the Flask-Limiter
   floor's over the minimal route and over the floor (in throughput and in CPU per request);
4. sends 10,000-entry batch checks, from one client, then from one client per worker at once
   (the service's throughput, as a platform checking its lists in parallel sees it), and prints
   entries per second of each.

Targets: ``check`` at least 0.6 of the minimal route's throughput and at least 0.8 of the
floor's; batch check at least 50,000 entries per second.

Run: ``.venv/bin/python bench/bench_api.py`` (``--subjects N``, ``--duration S``,
``--rounds N``, ``--workers N``, ``--threads N``, ``--connections N``; ``--quick`` for 100,000
subjects and two rounds of 3 s, a run of about a minute, which explicit options override).
``--batch-only`` serves only the app and runs only step 4, ``--rounds`` times (the median is
printed), with the server's CPU time per 10,000 entries, which other work on the machine
changes less than it changes throughput. Not part of the test suite: figures depend on the
machine.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import http.client
import json
import os
import re
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import gunicorn_workers  # beside this script

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret-key-not-for-production"
LOOKUP_KEY = "bench-lookup-key"
BATCH_TARGET = 50_000
RATIO_TARGET = 0.6
FLOOR_TARGET = 0.8

MINIMAL_APP = '''
from flask import Flask, jsonify, request

app = Flask(__name__)


@app.post("/check")
def check():
    request.get_json()
    return jsonify(allowed=False, status="unknown")
'''

#: The least any check must do, on top of the minimal route, with the parts it cannot do
#: without: two indexed reads through the driver's cursor (who asks: the bearer token; the
#: answer: the subject), as the app's check now reads, and one Ed25519 JWS (joserfc). No rate-limit library, no OAuth library, no logs,
#: no metrics, no state or notice join. Its throughput bounds what the real check can reach.
FLOOR_APP = '''
import hashlib
import json
import os
import warnings

from flask import Flask, jsonify, request
from joserfc import jws
from joserfc.jwk import OKPKey
from sqlalchemy import create_engine

warnings.filterwarnings("ignore")  # joserfc's notice that RFC 9864 renames EdDSA
app = Flask(__name__)
engine = create_engine(os.environ["CONSENT_DATABASE_URL"])
key = OKPKey.generate_key("Ed25519")
TOKEN = "SELECT campaign_id FROM oauth_tokens WHERE token_sha256 = ?"
LOOKUP = "SELECT public_id FROM subjects WHERE campaign_id = 1 AND email_hmac = ?"


@app.post("/check")
def check():
    question = request.get_json()
    bearer = request.headers.get("Authorization", "").encode()
    # A connection of SQLAlchemy's pool, read through the driver's own cursor.
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute(TOKEN, (hashlib.sha256(bearer).hexdigest(),))
        cursor.fetchone()
        cursor.execute(LOOKUP, (question["email"],))
        row = cursor.fetchone()
        cursor.close()
    finally:
        connection.close()
    decision = jws.serialize_compact({"alg": "EdDSA"}, json.dumps(question).encode(), key,
                                     algorithms=["EdDSA"])
    return jsonify(allowed=False, status="unknown", subject_id=row and row[0],
                   decision=decision)
'''

#: The floor as it was first written: the same route behind a Flask-Limiter limit (in-memory
#: storage, keyed by the bearer). Kept as a printed line: Flask-Limiter's bookkeeping costs more
#: per request than the reads and the signature together, so this is no floor, and the
#: difference between the two lines is that cost.
LIMITER_FLOOR_APP = FLOOR_APP.replace(
    "from joserfc import jws",
    "from flask_limiter import Limiter\nfrom joserfc import jws").replace(
    "key = OKPKey",
    "limiter = Limiter(lambda: request.headers.get(\"Authorization\", \"\"), app=app,\n"
    "                  storage_uri=\"memory://\")\nkey = OKPKey").replace(
    "@app.post(\"/check\")\n",
    "@app.post(\"/check\")\n@limiter.limit(\"100000000 per minute\")\n")


def free_port() -> int:
    """A free TCP port on loopback."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def email_of(i: int) -> str:
    """The address of subject ``i`` (the same normalised form the service stores)."""
    return f"supporter{i}@example.org"


def populate(database: Path, subjects: int, env: dict) -> dict:
    """Migrate, create the campaign and a client through the CLI, then bulk-insert subjects."""
    cli = str(ROOT / ".venv" / "bin" / "consent-widget")
    run = lambda *args: subprocess.run([cli, *args], env=env, check=True,  # noqa: E731
                                       capture_output=True, text=True).stdout
    run("db", "upgrade")
    run("campaign", "create", "bench", "--name", "Bench", "--controller", "Bench",
        "--contact-email", "dpo@example.org", "--policy-url", "https://example.org/p")
    client = json.loads(run("client", "create", "bench"))
    run("keys", "rotate")
    now = datetime.now(timezone.utc).replace(tzinfo=None).isoformat(sep=" ")
    key = LOOKUP_KEY.encode()
    started = time.perf_counter()
    with sqlite3.connect(database) as connection:
        campaign_id = connection.execute(
            "SELECT id FROM campaigns WHERE slug='bench'").fetchone()[0]
        # One ledger event that every state row names: the benchmark reads states, never events.
        connection.execute(
            "INSERT INTO consent_events (campaign_id, seq, subject_id, purpose, network, type, "
            "occurred_at, method, actor, origin, locale, prev_hash, hash) VALUES "
            "(?, 1, 1, 'social_matching', 'facebook', 'given', ?, 'bench', 'system', '', '', "
            "'', '')", (campaign_id, now))
        event_id = connection.execute("SELECT max(id) FROM consent_events").fetchone()[0]
        chunk = 50_000
        for start in range(0, subjects, chunk):
            ids = range(start + 1, min(start + chunk, subjects) + 1)
            connection.executemany(
                "INSERT INTO subjects (id, campaign_id, public_id, email_hmac, email, "
                "link_version, created_at) VALUES (?, ?, ?, ?, ?, 1, ?)",
                [(i, campaign_id, f"sub_bench{i}",
                  hmac.new(key, email_of(i).encode(), hashlib.sha256).hexdigest(), email_of(i),
                  now) for i in ids])
            connection.executemany(
                "INSERT INTO consent_states (campaign_id, subject_id, purpose, network, status, "
                "event_id, given_at, expires_at, updated_at) VALUES "
                "(?, ?, 'social_matching', 'facebook', ?, ?, ?, '2099-01-01 00:00:00', ?)",
                [(campaign_id, i, "given" if i % 2 else "withdrawn", event_id,
                  now if i % 2 else None, now) for i in ids if i % 4 != 0])
        connection.commit()
    print(f"populated {subjects:,} subjects in {time.perf_counter() - started:.1f} s")
    return client


#: The one setting of the project's gunicorn.conf.py that every app gets here too: before the
#: workers are forked, the preloaded app's objects are frozen out of the garbage collector's
#: reach. Without it, each full collection in a worker walks the whole app: the 10,000-entry
#: batch check set one off every two or three batches, some 25 ms a batch on average.
GUNICORN_CONFIG = """import gc


def when_ready(server):
    gc.freeze()
"""


def serve(module_dir: Path, target: str, port: int, args, env: dict) -> subprocess.Popen:
    """Start gunicorn on loopback with the given settings and wait until it accepts connections.

    Every app gets exactly these settings (the worker class gunicorn.conf.py picks for
    ``--threads``, preloaded app frozen before the fork, keep-alive), the project's too. A
    config file of the bench's own (:data:`GUNICORN_CONFIG`) keeps gunicorn from reading any
    other.
    """
    own_config = module_dir / "bench_gunicorn.conf.py" if module_dir != ROOT else None
    config = Path(tempfile.mkstemp(suffix=".conf.py")[1]) if own_config is None else own_config
    config.write_text(GUNICORN_CONFIG)
    process = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "gunicorn"), "--config", str(config),
         "--workers", str(args.workers), "--worker-class", worker_class(args),
         "--threads", str(args.threads), "--keep-alive", "5", "--preload",
         "--bind", f"127.0.0.1:{port}", "--chdir", str(module_dir), "--log-level", "warning",
         target], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"gunicorn did not start: {target}")


def worker_class(args) -> str:
    """gunicorn's worker class for ``--threads``, chosen as gunicorn.conf.py chooses it."""
    return "sync" if args.threads == 1 else "gthread"


def cpu_seconds(server: subprocess.Popen) -> float:
    """CPU time (user + system) used so far by the workers of a gunicorn master."""
    return gunicorn_workers.cpu_seconds(server.pid)


def token(port: int, client: dict) -> str:
    """A bearer token for the bench client."""
    connection = http.client.HTTPConnection("127.0.0.1", port)
    basic = base64.b64encode(f"{client['client_id']}:{client['client_secret']}".encode()).decode()
    connection.request("POST", "/oauth/token", "grant_type=client_credentials",
                       {"Authorization": f"Basic {basic}",
                        "Content-Type": "application/x-www-form-urlencoded"})
    return json.loads(connection.getresponse().read())["access_token"]


def load_wrk(url: str, body: str, headers: dict, duration: int, connections: int) -> dict:
    """Requests per second and latency percentiles (ms) measured by wrk."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(f"wrk.method = 'POST'\nwrk.body = {json.dumps(body)}\n")
        for name, value in headers.items():
            script.write(f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}\n")
    output = subprocess.run(["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency",
                             "-s", script.name, url], capture_output=True, text=True).stdout
    os.unlink(script.name)

    def ms(label):
        value, unit = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", output).groups()
        return float(value) * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "requests": int(re.search(r"(\d+) requests in", output).group(1)),
            "p50": ms("50"), "p99": ms("99"), "errors": int(non2xx.group(1)) if non2xx else 0}


def load_python(url: str, body: str, headers: dict, duration: int, connections: int) -> dict:
    """The same measures from keep-alive connections in threads (when wrk is missing)."""
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    latencies, errors, stop = [], [0], time.time() + duration

    def worker():
        connection = http.client.HTTPConnection(host, int(port))
        mine = []
        while time.time() < stop:
            started = time.perf_counter()
            connection.request("POST", path, body, headers)
            response = connection.getresponse()
            response.read()
            mine.append((time.perf_counter() - started) * 1000)
            errors[0] += response.status >= 300
        latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    cuts = statistics.quantiles(latencies, n=100)
    return {"rps": len(latencies) / duration, "requests": len(latencies),
            "p50": cuts[49], "p99": cuts[98],
            "errors": errors[0]}


def batch_bodies(subjects: int, count: int) -> list[str]:
    """``count`` different 10,000-entry batch bodies: most addresses known (given, withdrawn,
    never asked), some strangers, spread over the whole population."""
    bodies = []
    for r in range(count):
        emails = [email_of((r * 10_007 + i * 97) % (subjects + subjects // 10) + 1)
                  for i in range(10_000)]
        bodies.append(json.dumps({"purpose": "social_matching", "network": "facebook",
                                  "emails": emails}))
    return bodies


def batch_rate(port: int, bearer: str, bodies: list[str], clients: int) -> tuple[float, int]:
    """Entries per second of the batch checks ``bodies``, sent by ``clients`` connections at
    once, each waiting for its answer before sending the next; and how many were allowed."""
    allowed, failures = [], []

    def client(mine):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for body in mine:
            connection.request("POST", "/api/v1/consents/check-batch", body,
                               {"Authorization": f"Bearer {bearer}",
                                "Content-Type": "application/json"})
            response = connection.getresponse()
            raw = response.read()
            if response.status != 200:
                failures.append(f"batch answered {response.status}: {raw[:200]!r}")
                return
            allowed.append(raw)
        connection.close()

    threads = [threading.Thread(target=client, args=(bodies[i::clients],))
               for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # The clock stops when the last byte is in: parsing the answers is the clients' work.
    elapsed = time.perf_counter() - started
    if failures:
        raise RuntimeError(failures[0])
    count = sum(result["allowed"] for raw in allowed for result in json.loads(raw)["results"])
    return len(bodies) * 10_000 / elapsed, count


def batch_figures(server: subprocess.Popen, port: int, bearer: str, args, rounds: int) -> None:
    """Step 4: print the batch check's entries per second from one client, then from one
    client per worker at once; with several ``rounds``, each round's and their median, and the
    server's CPU time per 10,000-entry batch."""
    bodies = batch_bodies(args.subjects, 10)
    for clients in (1, args.workers):
        rates, cpus = [], []
        for number in range(1, rounds + 1):
            before = cpu_seconds(server)
            rate, allowed = batch_rate(port, bearer, bodies, clients)
            rates.append(rate)
            cpus.append((cpu_seconds(server) - before) * 1000 / len(bodies))
            if rounds > 1:
                print(f"round {number} batch check, {clients} client(s): {rate:8.0f} entries/s  "
                      f"server CPU {cpus[-1]:4.0f} ms/batch")
        rate, cpu = statistics.median(rates), statistics.median(cpus)
        who = ("from one client" if clients == 1
               else f"from {clients} clients at once, one per worker")
        print(f"{'batch check':>36}: {rate:8.0f} entries/s in 10,000-entry batches {who} "
              f"({allowed} allowed) on {args.subjects:,} subjects; server CPU {cpu:.0f} ms "
              f"per batch (target >= {BATCH_TARGET:,})")


def main() -> None:
    """Run the benchmark and print its figures."""
    gunicorn_workers.require_bench_extra()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows when piped to a file
    parser = argparse.ArgumentParser(description="Benchmark of the platform API.")
    parser.add_argument("--subjects", type=int, default=None, help="default 1,000,000")
    parser.add_argument("--duration", type=int, default=None, help="seconds of each round "
                        "(default 5)")
    parser.add_argument("--rounds", type=int, default=None, help="default 3")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--threads", type=int, default=1,
                        help="threads per worker: 1 (the default) serves with gunicorn's sync "
                             "workers, as gunicorn.conf.py does on SQLite; more, with gthread "
                             "workers of that many threads, as on a database server")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--quick", action="store_true",
                        help="100,000 subjects, 2 rounds of 3 s: a run of about a minute")
    parser.add_argument("--batch-only", action="store_true",
                        help="serve only the app and run only the batch checks (step 4), "
                             "--rounds times")
    args = parser.parse_args()
    quick = {"subjects": 100_000, "duration": 3, "rounds": 2}
    full = {"subjects": 1_000_000, "duration": 5, "rounds": 3}
    for name, value in (quick if args.quick else full).items():
        if getattr(args, name) is None:  # an explicit option wins over --quick
            setattr(args, name, value)
    workdir = Path(tempfile.mkdtemp(prefix="consent-bench-"))
    database = workdir / "bench.sqlite3"
    env = {**os.environ, "CONSENT_SECRET_KEY": SECRET, "CONSENT_LOOKUP_KEY": LOOKUP_KEY,
           "CONSENT_DATABASE_URL": f"sqlite:///{database}",
           "CONSENT_MAIL_URL": f"file://{workdir / 'outbox'}",
           "CONSENT_RATELIMIT_API": "100000000 per minute",
           "CONSENT_RATELIMIT_TOKEN": "100000 per minute"}
    (workdir / "minimal_app.py").write_text(MINIMAL_APP)
    (workdir / "floor_app.py").write_text(FLOOR_APP)
    (workdir / "limiter_floor_app.py").write_text(LIMITER_FLOOR_APP)
    servers = []
    try:
        client = populate(database, args.subjects, env)
        app_port = free_port()
        app_server = serve(ROOT, "server:app", app_port, args, env)
        servers.append(app_server)
        bearer = token(app_port, client)
        if args.batch_only:
            batch_figures(app_server, app_port, bearer, args, args.rounds)
            return
        targets = {"check": (app_server, f"http://127.0.0.1:{app_port}/api/v1/consents/check")}
        for name, module in (("minimal Flask route", "minimal_app"), ("floor", "floor_app"),
                             ("floor + Flask-Limiter", "limiter_floor_app")):
            port = free_port()
            server = serve(workdir, f"{module}:app", port, args, env)
            servers.append(server)
            targets[name] = (server, f"http://127.0.0.1:{port}/check")
        load = load_wrk if shutil.which("wrk") else load_python
        question = json.dumps({"email": email_of(1), "purpose": "social_matching",
                               "network": "facebook"})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {bearer}"}
        print(f"load generator: {'wrk' if load is load_wrk else 'python threads'}, "
              f"{args.connections} connections, {args.rounds} rounds of {args.duration} s each; "
              f"gunicorn {args.workers} {worker_class(args)} workers x {args.threads} "
              f"thread{'s' if args.threads > 1 else ''}, the same for each app; "
              f"{os.cpu_count()} CPUs")
        # Rounds alternate between the apps, so a burst of other work on the machine weighs on
        # each alike; a ratio is the median of the rounds' ratios.
        rounds = []
        for number in range(1, args.rounds + 1):
            figures = {}
            for name, (server, url) in targets.items():
                before = cpu_seconds(server)
                figures[name] = load(url, question, headers, args.duration, args.connections)
                figures[name]["cpu_us"] = ((cpu_seconds(server) - before) * 1e6
                                           / max(1, figures[name]["requests"]))
            for name, result in figures.items():
                print(f"round {number} {name:>21}: {result['rps']:8.0f} req/s  "
                      f"p50 {result['p50']:6.2f} ms  p99 {result['p99']:6.2f} ms  "
                      f"server CPU {result['cpu_us']:5.0f} us/request  "
                      f"non-2xx {result['errors']}")
            rounds.append(figures)

        def median(name, measure):
            return statistics.median(figures[name][measure] for figures in rounds)

        def ratio(name, of):
            """Median over the rounds of ``name``'s throughput over ``of``'s, and of ``of``'s
            CPU per request over ``name``'s (both read: the larger, the closer)."""
            rps = [figures[name]["rps"] / figures[of]["rps"] for figures in rounds]
            cpu = [figures[of]["cpu_us"] / figures[name]["cpu_us"] for figures in rounds]
            return statistics.median(rps), statistics.median(cpu), rps

        print("medians of the rounds:")
        for name in targets:
            print(f"{name:>36}: {median(name, 'rps'):8.0f} req/s  "
                  f"p50 {median(name, 'p50'):6.2f} ms  p99 {median(name, 'p99'):6.2f} ms  "
                  f"server CPU {median(name, 'cpu_us'):5.0f} us/request")
        for name, of, target, meaning in (
                ("check", "minimal Flask route", RATIO_TARGET, ""),
                ("check", "floor", FLOOR_TARGET, ""),
                ("floor", "minimal Flask route", None,
                 "what two reads and a signature leave of the minimal route"),
                ("floor + Flask-Limiter", "minimal Flask route", None,
                 "the first floor: the same with a Flask-Limiter limit"),
                ("floor + Flask-Limiter", "floor", None,
                 "what Flask-Limiter alone leaves of the floor")):
            rps, cpu, each = ratio(name, of)
            label = f"ratio {'check' if name == 'check' else name}/{of.split()[0]}"
            line = (f"{label:>36}: {rps:.2f} requests per second "
                    f"(rounds: {', '.join(f'{r:.2f}' for r in each)}"
                    f"{f'; target >= {target}' if target else ''}); "
                    f"{cpu:.2f} in server CPU per request")
            print(line + (f": {meaning}" if meaning else ""))
        print(f"{'check p99':>36}: {median('check', 'p99'):.2f} ms (median of the rounds; "
              f"minimal {median('minimal Flask route', 'p99'):.2f} ms, floor "
              f"{median('floor', 'p99'):.2f} ms)")
        batch_figures(app_server, app_port, bearer, args, 1)
    finally:
        for server in servers:
            server.terminate()
            server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
