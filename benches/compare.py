#!/usr/bin/env python3
"""folio against nginx proxy_cache and Varnish, on this machine, in one run.

Starts the example bookstore API (the origin), folio, nginx proxy_cache and
Varnish (each a fair, memory-backed shared cache with the same TTL and key:
benches/peers/), and runs the same scenarios against each with oha, round
robin (A B C, A B C, ...) so machine drift hits all alike, then reports
medians. Servers are pinned to CPU 0 and the load generator to CPU 1.
Hot hits are driven by wrk (one thread), which stays below its core's
limit where oha saturated its own; a bare hyper server answering one fixed
body (examples/bare.rs) is the stack's ceiling. Scenarios with many URLs
use oha. Each table shows how busy the load generator's core was.
Everything binds 127.0.0.1 and every run is bounded in requests or seconds.

    python3 benches/compare.py                 # the full comparison (~15 min)
    python3 benches/compare.py --quick         # 2 s per run, one round (a smoke run)
    python3 benches/compare.py --only hot,memory   # some scenarios only

scripts/bench.sh installs what is missing (oha, wrk, nginx, varnish, matplotlib)
and runs this. Results: benches/results/<date>.md, latest.md and chart.png.
"""

import argparse
import asyncio
import datetime
import json
import os
import platform
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PEERS = ROOT / "benches" / "peers"
RESULTS = ROOT / "benches" / "results"
SERVER_CPU, LOAD_CPU = "0", "1"
TENANT = "acme"
PRODUCTS = 10_000
ORIGIN_LATENCY_MS = 2


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


def pinned(cpu, args):
    return ["taskset", "-c", cpu, *args] if shutil.which("taskset") else list(args)


def http_json(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def rss_kb(pids):
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def cpu_ticks(cpu):
    """(busy, total) jiffies of one CPU so far, from /proc/stat."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith(f"cpu{cpu} "):
            ticks = [int(t) for t in line.split()[1:]]
            idle = ticks[3] + ticks[4]
            return sum(ticks) - idle, sum(ticks)
    return 0, 0


def busy(before, after):
    """How busy the load generator's and the servers' cores were between two
    (load, server) readings of cpu_ticks, in percent."""
    def percent(b, a):
        return 100 * (a[0] - b[0]) / max(a[1] - b[1], 1)
    return {"load_busy": percent(before[0], after[0]), "server_busy": percent(before[1], after[1])}


def per_server_core(result):
    """req/s per fully busy server core: what a server held back by its
    load generator could serve."""
    return result["rps"] * 100 / max(result.get("server_busy", 0), 1)


def children(pid):
    try:
        out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    except OSError:
        return []
    found = [int(p) for p in out]
    for child in list(found):
        found += children(child)
    return found


def dir_kb(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total // 1024


class Server:
    """A process we started, stopped on exit."""

    def __init__(self, name, args, port, env=None, cwd=None):
        self.name, self.port = name, port
        self.process = subprocess.Popen(
            pinned(SERVER_CPU, args), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=cwd
        )
        wait_port(port)

    def pids(self):
        return [self.process.pid, *children(self.process.pid)]

    def rss_kb(self):
        return rss_kb(self.pids())

    def stop(self):
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()


class Bench:
    def __init__(self, args):
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="folio-bench-", dir="/dev/shm" if Path("/dev/shm").exists() else None))
        # nginx's workers and Varnish drop privileges: they must reach their dirs.
        self.work.chmod(0o755)
        self.servers = []
        self.origin_port = free_port()
        self.folio_bin = ROOT / "target" / "release" / "folio"
        self.bookstore_bin = ROOT / "target" / "release" / "examples" / "bookstore"
        self.bare_bin = ROOT / "target" / "release" / "examples" / "bare"

    # ----- servers -----

    def start(self, name, args, port, **kw):
        server = Server(name, args, port, **kw)
        self.servers.append(server)
        return server

    def stop(self, server):
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def origin(self):
        return self.start(
            "origin",
            [str(self.bookstore_bin), "--listen", f"127.0.0.1:{self.origin_port}",
             "--latency-ms", str(ORIGIN_LATENCY_MS), "--products", str(PRODUCTS)],
            self.origin_port,
        )

    def origin_requests(self):
        return http_json(f"http://127.0.0.1:{self.origin_port}/_origin/stats")["requests"]

    def folio(self, policies="folio-policies", l1="2GB", extra=()):
        port = free_port()
        server = self.start(
            "folio",
            [str(self.folio_bin), "--listen", f"127.0.0.1:{port}", "--admin-listen", "off",
             "--upstream", f"http://127.0.0.1:{self.origin_port}", "--policies", str(PEERS / policies),
             "--access-log", "off", "--l1-capacity", l1, *extra],
            port, env={**os.environ, "RUST_LOG": "warn"},
        )
        server.prefix = ""
        return server

    def nginx(self):
        port, static_port = free_port(), free_port()
        d = self.work / f"nginx-{port}"
        for sub in ["cache", "body", "proxy", "fastcgi", "uwsgi", "scgi", "static/api/v1/products"]:
            (d / sub).mkdir(parents=True, exist_ok=True)
        for path in [d, *d.rglob("*")]:
            path.chmod(0o777 if path.name in {"cache", "body", "proxy", "fastcgi", "uwsgi", "scgi"} else 0o755)
        # The static ceiling serves the same 1 KB body folio and the peers cache.
        body = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{self.origin_port}/api/v1/products/42", headers={"X-Tenant-ID": TENANT})).read()
        (d / "static/api/v1/products/42").write_bytes(body)
        conf = (PEERS / "nginx.conf.template").read_text()
        for key, value in {"dir": d, "port": port, "static_port": static_port, "origin_port": self.origin_port}.items():
            conf = conf.replace("{" + key + "}", str(value))
        (d / "nginx.conf").write_text(conf)
        server = self.start("nginx", ["nginx", "-c", str(d / "nginx.conf"), "-p", str(d)], port)
        wait_port(static_port)
        server.prefix, server.static_port, server.cache_dir = "", static_port, d / "cache"
        return server

    def varnish(self):
        port = free_port()
        d = self.work / f"varnish-{port}"
        d.mkdir(parents=True, exist_ok=True)
        vcl = (PEERS / "varnish.vcl.template").read_text().replace("{origin_port}", str(self.origin_port))
        (d / "bench.vcl").write_text(vcl)
        server = self.start(
            "varnish",
            ["varnishd", "-F", "-j", "none", "-n", str(d / "work"), "-a", f"127.0.0.1:{port}",
             "-f", str(d / "bench.vcl"), "-s", "malloc,4G", "-p", "thread_pools=1"],
            port,
        )
        server.prefix = ""
        return server

    def bare(self):
        """The stack's ceiling: bare hyper answering the hot product's body."""
        port = free_port()
        body = urllib.request.urlopen(urllib.request.Request(
            f"http://127.0.0.1:{self.origin_port}/api/v1/products/42", headers={"X-Tenant-ID": TENANT})).read()
        path = self.work / "bare-body.json"
        path.write_bytes(body)
        server = self.start("bare hyper", [str(self.bare_bin), "--listen", f"127.0.0.1:{port}", "--body", str(path)],
                            port)
        server.prefix = ""
        return server

    def redis(self):
        port = free_port()
        return self.start("redis", ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                    "--appendonly", "no"], port)

    def close(self):
        for server in list(self.servers):
            server.stop()
        shutil.rmtree(self.work, ignore_errors=True)

    # ----- load -----

    def oha(self, urls, connections, seconds=None, requests=None, rate=None):
        """Runs oha against one URL or a URL file (at most `rate` req/s); returns its figures."""
        args = ["oha", "--no-tui", "--output-format", "json", "-c", str(connections), "-H", f"X-Tenant-ID: {TENANT}"]
        args += ["-z", f"{seconds}s"] if seconds else ["-n", str(requests)]
        if rate:
            args += ["-q", str(rate)]
        if isinstance(urls, Path):
            args += ["--urls-from-file", str(urls)]
        else:
            args.append(urls)
        before = cpu_ticks(LOAD_CPU), cpu_ticks(SERVER_CPU)
        out = subprocess.run(pinned(LOAD_CPU, args), capture_output=True, text=True, timeout=(seconds or 60) + 60)
        after = cpu_ticks(LOAD_CPU), cpu_ticks(SERVER_CPU)
        if out.returncode != 0:
            raise RuntimeError(f"oha failed: {out.stderr[-500:]}")
        data = json.loads(out.stdout)
        summary, pct = data["summary"], data.get("latencyPercentiles", {})
        statuses = data.get("statusCodeDistribution", {})
        ok = sum(v for k, v in statuses.items() if k.startswith("2"))
        # Requests cut off when a timed run ends are not failures.
        failures = {k: v for k, v in data.get("errorDistribution", {}).items() if "deadline" not in k}
        total = sum(statuses.values()) + sum(failures.values())
        return {
            "rps": summary["requestsPerSec"],
            "p50": pct.get("p50", 0) * 1000, "p99": pct.get("p99", 0) * 1000, "p999": pct.get("p99.9", 0) * 1000,
            "errors": total - ok, "requests": total,
            # How busy oha's core was: near 100%, its own queueing is in the latencies.
            **busy(before, after),
        }

    def wrk(self, url, connections, seconds, headers=()):
        """Runs wrk (one thread) against one URL; returns its figures like oha()."""
        args = ["wrk", "-t1", "-c", str(connections), "-d", f"{seconds}s", "--latency",
                "-H", f"X-Tenant-ID: {TENANT}"]
        for header in headers:
            args += ["-H", header]
        args.append(url)
        before = cpu_ticks(LOAD_CPU), cpu_ticks(SERVER_CPU)
        out = subprocess.run(pinned(LOAD_CPU, args), capture_output=True, text=True, timeout=seconds + 60)
        after = cpu_ticks(LOAD_CPU), cpu_ticks(SERVER_CPU)
        if out.returncode != 0:
            raise RuntimeError(f"wrk failed: {out.stderr[-500:]}")
        return {**parse_wrk(out.stdout), **busy(before, after)}

    def url_file(self, name, prefix, ids):
        path = self.work / f"{name}.txt"
        path.write_text("".join(f"{prefix}/api/v1/products/{i}\n" for i in ids))
        return path

    def zipf_ids(self, count, n=PRODUCTS, s=1.0):
        weights = [1 / (k ** s) for k in range(1, n + 1)]
        rng = random.Random(42)
        ranks = rng.choices(range(1, n + 1), weights=weights, k=count)
        perm = list(range(1, n + 1))
        rng.shuffle(perm)
        return [perm[r - 1] for r in ranks]


def parse_wrk(text):
    """req/s, p50 and p99 (ms), requests and errors from wrk --latency's report."""
    def ms(value):
        for unit, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
            if value.endswith(unit):
                return float(value[: -len(unit)]) * scale
        return float(value)
    figures = {"p999": None, "errors": 0}
    for line in text.splitlines():
        words = line.split()
        if line.startswith("Requests/sec:"):
            figures["rps"] = float(words[1])
        elif len(words) == 2 and words[0] in ("50.000%", "50%"):
            figures["p50"] = ms(words[1])
        elif len(words) == 2 and words[0] in ("99.000%", "99%"):
            figures["p99"] = ms(words[1])
        elif "requests in" in line:
            figures["requests"] = int(words[0])
        elif line.strip().startswith("Non-2xx or 3xx responses:"):
            figures["errors"] += int(words[-1])
        elif line.strip().startswith("Socket errors:"):
            # connect, read, write, timeout: counts of each
            figures["errors"] += sum(int(w.rstrip(",")) for w in words if w.rstrip(",").isdigit())
    return figures


def base(server):
    return f"http://127.0.0.1:{server.port}"


def median_of(runs):
    keys = ["rps", "p50", "p99", "p999", "errors", "hit_ratio", "load_busy", "server_busy", "per_core"]
    return {k: statistics.median(r[k] for r in runs if r.get(k) is not None)
            if any(r.get(k) is not None for r in runs) else None
            for k in keys if any(k in r for r in runs)}


def measured(bench, server, urls, connections, seconds, rate=None, tool="oha"):
    before = bench.origin_requests()
    if tool == "wrk":
        result = bench.wrk(urls, connections, seconds, headers=getattr(server, "headers", ()))
    else:
        result = bench.oha(urls, connections, seconds=seconds, rate=rate)
    origin = bench.origin_requests() - before
    result["hit_ratio"] = max(0.0, 1 - origin / max(result["requests"], 1))
    result["origin_requests"] = origin
    result["per_core"] = per_server_core(result)
    return result


async def store_distinct(port, count, connections=32):
    """Requests `count` distinct product URLs once each (keep-alive), so each becomes one entry."""
    async def worker(ids):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for i in ids:
            product, variant = i % PRODUCTS + 1, i // PRODUCTS
            writer.write(f"GET /api/v1/products/{product}?v={variant} HTTP/1.1\r\nHost: bench\r\n"
                         f"X-Tenant-ID: {TENANT}\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
        writer.close()
    ids = list(range(count))
    await asyncio.gather(*(worker(ids[k::connections]) for k in range(connections)))


def run(args):
    bench = Bench(args)
    seconds, rounds = (2, 1) if args.quick else (args.duration, args.rounds)
    results = {}
    try:
        print(f"building release binaries…", flush=True)
        if not args.no_build:
            subprocess.run(["cargo", "build", "--release", "--locked", "--bin", "folio", "--example", "bookstore",
                            "--example", "bare"], cwd=ROOT, check=True)
        bench.origin()
        systems = {"folio": bench.folio(), "nginx": bench.nginx(), "varnish": bench.varnish()}
        static = systems["nginx"].static_port
        hot = "/api/v1/products/42"
        want = lambda name: not args.only or name in args.only

        def scenario(name, build_urls, connections, warm=None, only=None, extra=None, rate=None, tool="oha"):
            names = only or list(systems)
            runs = {n: [] for n in names}
            for round_ in range(rounds):
                for n in names:
                    server = systems[n]
                    urls = build_urls(server)
                    if warm:
                        warm(server)
                    r = measured(bench, server, urls, connections, seconds, rate, tool)
                    runs[n].append(r)
                    print(f"  {name:<18} round {round_ + 1}  {n:<20} {r['rps']:>10.0f} req/s  p99 {r['p99']:.2f} ms"
                          f"  hit {r['hit_ratio']:.3f}  {tool} core {r['load_busy']:.0f}%  server core {r['server_busy']:.0f}%",
                          flush=True)
            results[name] = {n: {**median_of(v), "tool": tool} for n, v in runs.items()}
            if extra:
                results[name].update(extra)

        def warm_url(server):
            for _ in range(50):
                request = urllib.request.Request(base(server) + hot, headers={"X-Tenant-ID": TENANT})
                urllib.request.urlopen(request, timeout=10).read()

        # The same folio, asked by a client that takes brotli: the stored
        # bytes as they are.
        systems["folio, br client"] = type("S", (), {"port": systems["folio"].port, "prefix": "",
                                                     "headers": ("Accept-Encoding: br",)})()
        systems["static file (nginx)"] = type("S", (), {"port": static, "prefix": ""})()
        systems["bare hyper"] = bench.bare()
        systems["origin direct"] = type("S", (), {"port": bench.origin_port, "prefix": ""})()
        if want("hot"):
            print("scenario: hot hit (50 connections, wrk)", flush=True)
            scenario("hot hit", lambda s: base(s) + hot, 50, warm=warm_url, tool="wrk")
        if want("hot500"):
            print("scenario: hot hit (500 connections, wrk)", flush=True)
            scenario("hot hit, 500 conn", lambda s: base(s) + hot, 500, warm=warm_url, tool="wrk",
                     only=["folio", "folio, br client", "nginx", "varnish", "static file (nginx)", "bare hyper"])

        zipf = bench.zipf_ids(200_000)
        if want("catalogue") or want("rate"):
            print("scenario: catalogue (10,000 URLs, Zipf, warm; oha)", flush=True)
            files = {n: bench.url_file(f"zipf-{n.split()[0]}", base(systems[n]), zipf) for n in ["folio", "nginx", "varnish"]}
            for n in ["folio", "nginx", "varnish"]:
                uniform = bench.url_file(f"all-{n}", base(systems[n]), range(1, PRODUCTS + 1))
                bench.oha(uniform, 50, requests=PRODUCTS * 3)
            scenario("catalogue", lambda s: files[next(n for n in files if systems[n] is s)], 50,
                     only=["folio", "nginx", "varnish"])

        # The same offered load, within every cache's capacity, compares
        # the latency the caches themselves add.
        caches = ["folio", "nginx", "varnish"]
        if want("rate"):
            for name, urls in [("hot hit", lambda s: base(s) + hot),
                               ("catalogue", lambda s: files[next(n for n in files if systems[n] is s)])]:
                if name not in results:
                    continue
                rate = max(1000, int(0.8 * min(results[name][n]["rps"] for n in caches) / 1000) * 1000)
                print(f"scenario: {name} at a fixed {rate:,} req/s (80% of the slowest cache's rate; oha)", flush=True)
                scenario(f"{name} at {rate:,} req/s", urls, 50, only=caches, rate=rate)

        starters = {"folio": bench.folio, "nginx": bench.nginx, "varnish": bench.varnish}
        if want("cold"):
            print("scenario: cold start (same URLs, empty cache; oha)", flush=True)
            cold = {n: [] for n in ["folio", "nginx", "varnish"]}
            for round_ in range(rounds):
                for n in cold:
                    fresh = starters[n]()
                    urls = bench.url_file(f"cold-{n}", base(fresh), zipf)
                    r = measured(bench, fresh, urls, 50, seconds)
                    cold[n].append(r)
                    print(f"  cold start         round {round_ + 1}  {n:<14} {r['rps']:>10.0f} req/s  hit {r['hit_ratio']:.3f}"
                          f"  origin {r['origin_requests']}", flush=True)
                    bench.stop(fresh)
            results["cold start"] = {n: {**median_of(v), "origin_requests": statistics.median(x["origin_requests"] for x in v),
                                         "tool": "oha"} for n, v in cold.items()}

        if want("l2"):
            print("scenario: L2 hit (folio with no L1, local Redis; wrk)", flush=True)
            redis = bench.redis()
            systems["folio L2 only"] = bench.folio(l1="0", extra=["--redis", f"redis://127.0.0.1:{redis.port}"])
            scenario("L2 hit", lambda s: base(s) + hot, 50, warm=lambda s: (warm_url(s), time.sleep(0.5)),
                     only=["folio", "folio L2 only"], tool="wrk")

        if want("miss"):
            print("scenario: miss path (nothing cached; oha)", flush=True)
            systems["folio (no cache)"] = bench.folio(policies="folio-nocache")
            nocache = {"nginx": "/nocache", "varnish": "/nocache"}
            scenario("miss path", lambda s: base(s) + nocache.get(next((n for n, v in systems.items() if v is s), ""), "") + hot,
                     50, only=["folio (no cache)", "nginx", "varnish", "origin direct"])

        if want("memory"):
            memory = {}
            count = 5_000 if args.quick else 100_000
            print(f"scenario: memory ({count:,} distinct 1 KB entries)", flush=True)
            starters["folio, compress: false"] = lambda: bench.folio(policies="folio-policies-uncompressed")
            for n in ["folio", "folio, compress: false", "nginx", "varnish"]:
                fresh = starters[n]()
                time.sleep(0.5)
                baseline = fresh.rss_kb() + (dir_kb(fresh.cache_dir) if n == "nginx" else 0)
                began = time.time()
                asyncio.run(store_distinct(fresh.port, count))
                time.sleep(1.0)
                after = fresh.rss_kb() + (dir_kb(fresh.cache_dir) if n == "nginx" else 0)
                memory[n] = {"baseline_kb": baseline, "after_kb": after, "per_entry_kb": (after - baseline) / count,
                             "entries": count, "fill_s": time.time() - began}
                print(f"  memory             {n:<22} {memory[n]['per_entry_kb']:.2f} KB per entry "
                      f"({baseline} -> {after} KB)", flush=True)
                bench.stop(fresh)
            results["memory"] = memory
    finally:
        bench.close()
    return results


def machine():
    def cmd(*args):
        try:
            return subprocess.run(args, capture_output=True, text=True).stdout.strip() or subprocess.run(
                args, capture_output=True, text=True).stderr.strip()
        except OSError:
            return "?"
    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor())
    mem = next((l.split()[1] for l in Path("/proc/meminfo").read_text().splitlines() if l.startswith("MemTotal")), "?")
    return {
        "cpu": f"{cpu}, {os.cpu_count()} cores", "memory": f"{int(mem) // 1024 // 1024} GiB" if mem != "?" else "?",
        "kernel": platform.release(), "nginx": cmd("nginx", "-v").replace("nginx version: ", ""),
        "varnish": cmd("varnishd", "-V").splitlines()[0] if cmd("varnishd", "-V") else "?",
        "oha": cmd("oha", "--version"), "folio": cmd(str(ROOT / "target/release/folio"), "--version"),
        "wrk": (cmd("wrk", "--version").splitlines() or ["wrk ?"])[0].split(" [")[0],
    }


def report(results, args, info):
    date = datetime.date.today().isoformat()
    seconds, rounds = (2, 1) if args.quick else (args.duration, args.rounds)
    lines = [f"# folio vs nginx proxy_cache vs Varnish — {date}", "",
             f"Machine: {info['cpu']}, {info['memory']}, Linux {info['kernel']}. "
             f"Servers pinned to CPU {SERVER_CPU}, the load generator (wrk with one thread for single-URL "
             f"scenarios, oha for URL lists and fixed rates) to CPU {LOAD_CPU} (`taskset`).",
             f"Versions: {info['folio']}; nginx {info['nginx']}; {info['varnish']}; {info['oha']}; {info['wrk']}.",
             f"Each run {seconds} s; {rounds} round(s), systems alternating A B C; medians shown. "
             f"Origin: the example bookstore API with {ORIGIN_LATENCY_MS} ms latency, {PRODUCTS:,} products. "
             "Hit ratio = 1 − origin requests / requests. Ratios are each system's req/s over folio's. "
             "load core: how busy the load generator's CPU was; near 100% it measures itself, and its "
             "queueing is part of every latency. server core: how busy the servers' CPU was; a server "
             "below 100% while the load core is near it was held back by the generator, and req/s per "
             "busy server core (req/s ÷ server core) is then what it could serve. Differences within "
             "the run-to-run spread are ties.",
             ""]
    for name, systems in results.items():
        if name == "memory":
            continue
        lines += [f"## {name}", "",
                  "| system | req/s | p50 ms | p99 ms | p99.9 ms | hit ratio | errors | load core | server core "
                  "| req/s per busy server core | × folio |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        ref = next((v["rps"] for k, v in systems.items() if k.startswith("folio")), None)
        for system, r in systems.items():
            ratio = f"{r['rps'] / ref:.2f}" if ref else "–"
            p999 = f"{r['p999']:.2f}" if r.get("p999") is not None else "–"
            lines.append(f"| {system} | {r['rps']:,.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {p999} | "
                         f"{r.get('hit_ratio', 0):.3f} | {r['errors']:.0f} | {r.get('load_busy', 0):.0f}% "
                         f"({r.get('tool', 'oha')}) | {r.get('server_busy', 0):.0f}% | "
                         f"{r.get('per_core', 0):,.0f} | {ratio} |")
        lines.append("")
    memory = results.get("memory", {})
    if memory:
        count = next(iter(memory.values()))["entries"]
        lines += [f"## memory: {count:,} distinct 1 KB entries", "",
                  "| system | baseline RSS | after | per entry | × folio |", "|---|---:|---:|---:|---:|"]
        ref = memory.get("folio", {}).get("per_entry_kb")
        for system, m in memory.items():
            lines.append(f"| {system} | {m['baseline_kb'] / 1024:.1f} MiB | {m['after_kb'] / 1024:.1f} MiB | "
                         f"{m['per_entry_kb']:.2f} KB | {m['per_entry_kb'] / ref:.2f} |" if ref else "")
        lines += ["", "nginx's figure includes its cache files on tmpfs (they are memory too).", ""]
    return "\n".join(lines)


def chart(results, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib missing: no chart (pip install matplotlib)")
        return
    scenarios = [s for s in results if s != "memory"]
    per_row = 4
    rows = (len(scenarios) + per_row - 1) // per_row
    fig, axes = plt.subplots(2 * rows, per_row, figsize=(3.6 * per_row, 6.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.set_visible(False)
    for i, s in enumerate(scenarios):
        top, bottom = axes[2 * (i // per_row)][i % per_row], axes[2 * (i // per_row) + 1][i % per_row]
        names = list(results[s])
        colors = ["#2f9e6b" if n.startswith("folio") else "#6c8ebf" if "nginx" in n else "#c98a3a" if "varnish" in n
                  else "#999999" for n in names]
        top.bar(range(len(names)), [results[s][n]["rps"] / 1000 for n in names], color=colors)
        top.set_title(s)
        top.set_ylabel("thousand req/s" if i % per_row == 0 else "")
        bottom.bar(range(len(names)), [results[s][n]["p99"] for n in names], color=colors)
        bottom.set_ylabel("p99 ms" if i % per_row == 0 else "")
        for ax in (top, bottom):
            ax.set_visible(True)
            ax.set_xticks(range(len(names)))
            ax.set_xticklabels(names, rotation=45, ha="right", fontsize=8)
    fig.suptitle("folio vs nginx proxy_cache vs Varnish: throughput, and p99 latency below it")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="2 s runs, one round: a smoke run")
    parser.add_argument("--duration", type=int, default=12, help="seconds per run (default 12)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (default 3)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where results go")
    parser.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    parser.add_argument("--only", type=lambda v: set(v.split(",")), default=None,
                        help="comma-separated scenarios: hot, hot500, catalogue, rate, cold, l2, miss, memory")
    args = parser.parse_args()
    needs_oha = not args.only or bool(args.only & {"catalogue", "rate", "cold", "miss"})
    for tool in ["oha"] * needs_oha + ["wrk", "nginx", "varnishd", "redis-server"]:
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/bench.sh, which installs it")
    results = run(args)
    info = machine()
    args.out.mkdir(parents=True, exist_ok=True)
    text = report(results, args, info)
    name = "quick" if args.quick else datetime.date.today().isoformat() + ("-" + "-".join(sorted(args.only)) if args.only else "")
    (args.out / f"{name}.md").write_text(text)
    (args.out / f"{name}.json").write_text(json.dumps({"machine": info, "results": results}, indent=2))
    if not args.quick and not args.only:
        (args.out / "latest.md").write_text(text)
    chart(results, args.out / ("quick.png" if args.quick else "chart.png"))
    print(text)


if __name__ == "__main__":
    main()
