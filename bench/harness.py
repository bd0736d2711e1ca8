#!/usr/bin/env python3
"""The load harness (run it with scripts/bench.sh, which installs nginx and wrk and builds).

Three targets in front of one upstream, measured side by side in one run:
  direct      the Azure simulator itself (fast mode: no artificial delays)
  nginx       a bare nginx TLS reverse proxy to it: no auth, no policy (the ceiling)
  portcullis  the gateway with its full pipeline: token validation, a 200-rule policy,
              masking, durable recording in SQLite (its defaults otherwise, logs included)
Four requests (a small ARM GET, a Key Vault secret GET, a ~1 MB list, a PUT with a JSON
body), each at concurrencies 1, 16, 64 and 256, driven by wrk over HTTPS with keep-alive.
Interleaved: for each request and concurrency, the three targets run one after another.

Then 10,000 requests held for approval at once by a fresh gateway process (RSS per held
request, time to release all after approval), and the criterion micro-benchmarks.

Writes bench/results/latest.json and bench/results/latest.md. Only 127.0.0.1 is touched.
"""

import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RELEASE = ROOT / "target" / "release"
TARGETS = ["direct", "nginx", "portcullis"]
GATEWAY_API = "api://portcullis"
ARM = "https://management.azure.com/"
VAULT = "https://vault.azure.net"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Service:
    """A child process with its log in the run directory, stopped on exit."""

    def __init__(self, name, argv, workdir, env=None, stop_signal=signal.SIGTERM):
        self.name = name
        self.log_path = workdir / f"{name}.log"
        self.stop_signal = stop_signal
        self.proc = subprocess.Popen(
            argv,
            cwd=workdir,
            stdout=open(self.log_path, "wb"),
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            start_new_session=True,
        )

    def pids(self):
        """The process and its children (nginx's workers)."""
        children = subprocess.run(
            ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True
        ).stdout.split()
        return [self.proc.pid] + [int(p) for p in children]

    def stop(self):
        if self.proc.poll() is None:
            # The whole group: a wrapper's child too.
            os.killpg(self.proc.pid, self.stop_signal)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def check(self):
        if self.proc.poll() is not None:
            raise SystemExit(
                f"{self.name} exited ({self.proc.returncode}):\n{self.log_path.read_text()[-4000:]}"
            )


def cpu_ticks(pids):
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        except (FileNotFoundError, IndexError):
            pass
    return total


def status_kib(pid, key):
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except FileNotFoundError:
        pass
    return 0


def reset_peak(pids):
    """Resets the peak RSS (VmHWM) the kernel keeps, so each run reports its own peak."""
    for pid in pids:
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")
        except OSError:
            pass


def peak_rss_kib(pids):
    return sum(status_kib(p, "VmHWM") for p in pids)


def http(method, url, ctx, token=None, body=None, timeout=30):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def wait_until(what, check, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"timed out waiting for {what}")


def tls_context(ca):
    return ssl.create_default_context(cafile=str(ca))


def unverified_context():
    """For answers whose content, not whose certificate, is the point (a target's CA may
    not exist yet)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


# --- the policy: 200 rules, four of them the ones these requests need --------------------

NAMESPACES = [
    "Microsoft.Compute", "Microsoft.Storage", "Microsoft.KeyVault", "Microsoft.Network",
    "Microsoft.Web", "Microsoft.Sql", "Microsoft.DocumentDB", "Microsoft.ContainerService",
    "Microsoft.Insights", "Microsoft.Authorization", "Microsoft.Resources", "Microsoft.EventHub",
    "Microsoft.ServiceBus", "Microsoft.Cache", "Microsoft.Search", "Microsoft.CognitiveServices",
    "Microsoft.ContainerRegistry", "Microsoft.OperationalInsights", "Microsoft.AppConfiguration",
    "Microsoft.ManagedIdentity",
]


def policy_yaml(groups, rules=200):
    """The bench agent's rules, among others for other teams that a real policy would hold:
    other groups, other resource groups, every effect, some with a CEL condition."""
    y = [
        "aliases:",
        "  groups:",
        f"    agents: {groups['ai-agents']}",
        f"    approvers: {groups['approvers']}",
        "rules:",
        "  - name: bench-read-groups",
        "    effect: allow",
        "    principals: [group:agents]",
        "    actions: [Microsoft.Resources/subscriptions/resourceGroups/read]",
        "    scopes: [/subscriptions/*/resourceGroups/demo-rg]",
        "  - name: bench-list-vms",
        "    effect: allow",
        "    principals: [group:agents]",
        "    actions: [Microsoft.Compute/virtualMachines/read]",
        "    scopes: [/subscriptions/*/resourceGroups/bench-rg]",
        "  - name: bench-read-secrets",
        "    effect: allow",
        "    principals: [group:agents]",
        "    data_actions: [Microsoft.KeyVault/vaults/secrets/getSecret/action]",
        "    scopes: [\"vault:demo-kv\"]",
        "  - name: bench-write-group",
        "    effect: allow",
        "    principals: [group:agents]",
        "    actions: [Microsoft.Resources/subscriptions/resourceGroups/write]",
        "    scopes: [/subscriptions/*/resourceGroups/bench-put-rg]",
        "    when: \"request.body.location == 'eastus'\"",
        "  - name: bench-hold-storage-creates",
        "    effect: approve",
        "    principals: [group:agents]",
        "    actions: [Microsoft.Storage/storageAccounts/write]",
        "    scopes: [/subscriptions/*/resourceGroups/bench-rg]",
        "    approval: {approvers: [group:approvers], quorum: 1, timeout: 30m}",
    ]
    for i in range(rules - 5):
        ns = NAMESPACES[i % len(NAMESPACES)]
        effect = ["allow", "deny", "allow", "approve"][i % 4]
        y += [
            f"  - name: team-{i}",
            f"    effect: {effect}",
            f"    principals: [group:{derived_group(i)}]",
            f"    actions: [{ns}/type{i % 7}/*]",
            f"    scopes: [/subscriptions/*/resourceGroups/team-{i % 25}-rg]",
        ]
        if effect == "approve":
            y.append("    approval: {approvers: [group:approvers]}")
        if i % 5 == 0:
            y.append("    when: \"request.body.location != 'westeurope'\"")
    return "\n".join(y) + "\n"


def derived_group(i):
    # Object ids of groups no token here carries.
    return f"00000000-0000-4000-8000-{i:012d}"


# --- setting up the three targets -------------------------------------------------------


def start_sim(run, args):
    (run / "sim.yaml").write_text("page_size: 5000\n")
    port = free_port()
    sim = Service(
        "azure-sim",
        [str(RELEASE / "azure-sim"), "serve", "--listen", f"127.0.0.1:{port}",
         "--tls-dir", "sim", "--config", "sim.yaml", "--fast"],
        run,
        env={"RUST_LOG": "warn"},
        stop_signal=signal.SIGINT,
    )
    state_file = run / "sim" / "sim.json"
    wait_until("the simulator", lambda: (sim.check(), state_file.exists())[1])
    time.sleep(0.2)
    state = json.loads(state_file.read_text())
    return sim, state


def mint(sim_url, ctx, principal, audience):
    status, body = http("POST", f"{sim_url}/_sim/token", ctx,
                        body={"principal": principal, "audience": audience})
    if status != 200:
        raise SystemExit(f"minting a token for {principal}: {status} {body[:300]!r}")
    return json.loads(body)["access_token"]


def seed(sim_url, ctx, sub, arm_token, list_bytes):
    """bench-rg with enough VMs that their list is about `list_bytes`, and bench-put-rg."""
    rg = f"{sim_url}/subscriptions/{sub}/resourceGroups"
    for name in ["bench-rg", "bench-put-rg"]:
        s, b = http("PUT", f"{rg}/{name}?api-version=2022-09-01", ctx, arm_token,
                    {"location": "eastus"})
        assert s in (200, 201), (s, b[:300])
    pad = "x" * 96
    body = {
        "location": "eastus",
        "tags": {f"tag{i}": pad for i in range(6)},
        "properties": {"hardwareProfile": {"vmSize": "Standard_B1s"}},
    }

    def put(i):
        s, b = http("PUT", f"{rg}/bench-rg/providers/Microsoft.Compute/virtualMachines/"
                    f"bench-vm-{i:05d}?api-version=2024-07-01", ctx, arm_token, body)
        assert s in (200, 201), (s, b[:300])

    # One first, to learn how large a listed VM is.
    put(0)
    s, one = http("GET", f"{rg}/bench-rg/providers/Microsoft.Compute/virtualMachines"
                  "?api-version=2024-07-01", ctx, arm_token)
    count = max(1, round(list_bytes / max(1, len(one))))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(put, range(1, count)))
    return count


def start_nginx(run, sim_port):
    """A bare TLS reverse proxy: keep-alive to the upstream, nothing else."""
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-keyout", "nginx.key", "-out", "nginx.crt", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        cwd=run, check=True, capture_output=True,
    )
    for d in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]:
        (run / "nginx-tmp" / d).mkdir(parents=True, exist_ok=True)
    port = free_port()
    user = "user root root;\n" if os.geteuid() == 0 else ""
    conf = f"""{user}worker_processes auto;
daemon off;
pid {run}/nginx.pid;
error_log {run}/nginx-error.log warn;
events {{ worker_connections 20000; }}
http {{
    access_log {run}/nginx-access.log;
    client_body_temp_path {run}/nginx-tmp/client_body;
    proxy_temp_path {run}/nginx-tmp/proxy;
    fastcgi_temp_path {run}/nginx-tmp/fastcgi;
    uwsgi_temp_path {run}/nginx-tmp/uwsgi;
    scgi_temp_path {run}/nginx-tmp/scgi;
    upstream sim {{ server 127.0.0.1:{sim_port}; keepalive 256; }}
    server {{
        listen 127.0.0.1:{port} ssl http2;
        ssl_certificate {run}/nginx.crt;
        ssl_certificate_key {run}/nginx.key;
        client_max_body_size 4m;
        keepalive_requests 1000000;
        location / {{
            proxy_pass https://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_ssl_session_reuse on;
        }}
    }}
}}
"""
    (run / "nginx.conf").write_text(conf)
    nginx = Service("nginx", ["nginx", "-c", str(run / "nginx.conf"), "-p", str(run)], run,
                    stop_signal=signal.SIGQUIT)
    return nginx, port


def gateway_config(run, state, gw_port, admin_port):
    api = next(a["app_id"] for a in state["apis"] if GATEWAY_API in a["identifiers"])
    baseline = next(p for p in state["principals"] if p["name"] == "portcullis-baseline")
    secret = run / "baseline.secret"
    secret.write_text(state["client_secrets"]["portcullis-baseline"])
    secret.chmod(0o600)
    (run / "policy.yaml").write_text(policy_yaml(state["groups"]))
    (run / "portcullis.yaml").write_text(f"""# Written by bench/harness.py: the gateway's defaults, but for what a load test needs.
listen: {{gateway: "127.0.0.1:{gw_port}", admin: "127.0.0.1:{admin_port}"}}
state_dir: state
identity:
  authority: {state['url']}
  tenant: {state['tenant_id']}
  audiences: [{GATEWAY_API}, {api}]
  ca_file: sim/ca.pem
upstream:
  arm_url: {state['url']}
  keyvault_url: "{state['url']}/keyvault/{{vault}}"
  ca_file: sim/ca.pem
  credentials:
    baseline: {{type: client_secret, client_id: {baseline['app_id']}, client_secret: {{file: baseline.secret}}}}
# One principal sends everything here: no per-principal rate limit, and one client approves
# 10,000 held requests through the admin API: no per-client limit there. Room for 10,000 held.
limits: {{rate_per_principal: 0, admin_rate_per_client: 0, max_connections: 30000}}
approvals: {{hold: 900s, max_held: 20000, max_pending_per_principal: 0}}
policy:
  include: policy.yaml
""")


def start_gateway(run, name, admin_port):
    binary = os.environ.get("PORTCULLIS_BIN", str(RELEASE / "portcullis"))
    # PORTCULLIS_WRAP runs the gateway under a tool (e.g. "heaptrack -o /tmp/held").
    wrap = os.environ.get("PORTCULLIS_WRAP", "").split()
    gw = Service(name, wrap + [binary, "serve", "--config", "portcullis.yaml"], run)
    ctx = unverified_context()

    def ready():
        gw.check()
        return http("GET", f"https://127.0.0.1:{admin_port}/readyz", ctx, timeout=2)[0] == 200

    wait_until("the gateway", ready, timeout=60)
    ca = run / "state" / "tls" / "ca.pem"
    match = re.search(r"development CA at (\S+)", gw.log_path.read_text())
    if match:
        ca = run / match.group(1)
    return gw, ca


# --- load --------------------------------------------------------------------------------


def wrk(url, concurrency, seconds, env, out):
    threads = max(1, min(2, concurrency))
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--timeout", "10s",
           "-s", str(ROOT / "bench" / "wrk.lua"), url]
    subprocess.run(cmd, env={**os.environ, **env, "BENCH_OUT": str(out)}, check=True,
                   capture_output=True)
    return json.loads(out.read_text())


def run_load(run, args, targets, scenarios):
    results = []
    for sc in scenarios:
        for c in args.concurrency:
            for name in TARGETS:
                t = targets[name]
                t["service"].check()
                url = t["base"] + sc["path"]
                env = {"BENCH_METHOD": sc["method"], "BENCH_TOKEN": t["tokens"][sc["token"]],
                       "BENCH_BODY_FILE": sc.get("body_file", "")}
                # Warm connections, caches and the JIT of the Lua script.
                wrk(url, min(c, 16), 1, env, run / "warm.json")
                pids = t["service"].pids()
                reset_peak(pids)
                before = cpu_ticks(pids)
                profiler = None
                if args.profile and name == "portcullis":
                    data = args.out / f"perf-{sc['name'].replace(' ', '-')}-c{c}.data"
                    profiler = subprocess.Popen(
                        ["perf", "record", "-F", "999", "-g", "--call-graph", "dwarf,16384",
                         "-o", str(data), "-p", str(pids[0]), "--", "sleep", str(args.duration)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                r = wrk(url, c, args.duration, env, run / "wrk.json")
                ticks = cpu_ticks(pids) - before
                if profiler:
                    profiler.wait()
                seconds = r["duration_us"] / 1e6
                errors = sum(r["errors"].values())
                row = {
                    "request": sc["name"], "concurrency": c, "target": name,
                    "requests": r["requests"], "errors": r["errors"],
                    "rps": r["requests"] / seconds if seconds else 0.0,
                    "p50_ms": r["latency_us"]["p50"] / 1000,
                    "p99_ms": r["latency_us"]["p99"] / 1000,
                    "p999_ms": r["latency_us"]["p999"] / 1000,
                    "cpu_us_per_request": (ticks / CLK_TCK * 1e6 / r["requests"]) if r["requests"] else None,
                    "peak_rss_mib": peak_rss_kib(pids) / 1024,
                    "response_bytes": r["bytes"] / r["requests"] if r["requests"] else 0,
                }
                results.append(row)
                log(f"{sc['name']:<14} c={c:<3} {name:<10} {row['rps']:9.0f} req/s  p50 "
                    f"{row['p50_ms']:.2f} ms  p99 {row['p99_ms']:.2f} ms  cpu "
                    f"{row['cpu_us_per_request'] or 0:.0f} us/req  rss {row['peak_rss_mib']:.0f} MiB"
                    + (f"  ERRORS {r['errors']}" if errors else ""))
    return results


def held_scale(run, args, state, ctx_sim, admin_port, connections):
    """A fresh gateway; N requests held at once over `connections` (HTTP/1.1 when one per
    request, else HTTP/2); all approved; all complete."""
    sim_url = state["url"]
    agent = mint(sim_url, ctx_sim, "agent", GATEWAY_API)
    alice = mint(sim_url, ctx_sim, "alice", GATEWAY_API)
    gw_port = int(re.search(r'gateway: "127.0.0.1:(\d+)"',
                            (run / "portcullis.yaml").read_text()).group(1))
    gw, ca = start_gateway(run, "portcullis-held", admin_port)
    try:
        out = subprocess.run(
            [str(RELEASE / "examples" / "held_scale"),
             "--gateway", f"https://127.0.0.1:{gw_port}",
             "--admin", f"https://127.0.0.1:{admin_port}",
             "--ca", str(ca), "--pid", str(gw.proc.pid),
             "--held", str(args.held), "--connections", str(connections),
             "--subscription", state["subscription_id"]],
            env={**os.environ, "AGENT_TOKEN": agent, "APPROVER_TOKEN": alice},
            capture_output=True, text=True, timeout=900,
        )
        if out.returncode != 0:
            raise SystemExit(f"held_scale failed:\n{out.stdout}\n{out.stderr}\n"
                             f"{gw.log_path.read_text()[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        gw.stop()


MICRO_BENCHES = ["identity", "policy", "hotpath", "masking", "audit", "console"]


def micro_benchmarks(args):
    """Runs the criterion benches briefly and reads every median criterion wrote."""
    since = time.time()
    for bench in MICRO_BENCHES:
        log(f"criterion: {bench}")
        r = subprocess.run(
            ["cargo", "bench", "--locked", "-q", "-p", "portcullis", "--bench", bench, "--",
             "--warm-up-time", "1", "--measurement-time", str(args.micro_seconds)],
            cwd=ROOT, capture_output=True, text=True,
        )
        if r.returncode != 0:
            log(f"criterion {bench} failed: {r.stderr[-2000:]}")
    rows = []
    for est in sorted((ROOT / "target" / "criterion").glob("**/new/estimates.json")):
        if est.stat().st_mtime < since:
            continue
        meta = json.loads((est.parent / "benchmark.json").read_text())
        e = json.loads(est.read_text())["median"]
        rows.append({"id": meta["full_id"], "median_us": e["point_estimate"] / 1000,
                     "low_us": e["confidence_interval"]["lower_bound"] / 1000,
                     "high_us": e["confidence_interval"]["upper_bound"] / 1000})
    return rows


def fmt_us(us):
    if us < 1:
        return f"{us * 1000:.0f} ns"
    if us < 1000:
        return f"{us:.2f} us"
    return f"{us / 1000:.2f} ms"


# --- reporting -----------------------------------------------------------------------------


def machine():
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = status_line("/proc/meminfo", "MemTotal")
    def version(cmd):
        out = subprocess.run(cmd, capture_output=True, text=True)
        return out.stdout.strip() or out.stderr.strip()

    return {
        "cpus": os.cpu_count(),
        "cpu_model": cpu,
        "memory": mem,
        "kernel": platform.release(),
        "load_average_at_start": os.getloadavg(),
        "nginx": version(["nginx", "-v"]),
        "wrk": " ".join(version(["wrk", "-v"]).split()[:2]),
        "rustc": version(["rustc", "-V"]),
        "commit": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                                 capture_output=True, text=True).stdout.strip(),
    }


def status_line(path, key):
    for line in Path(path).read_text().splitlines():
        if line.startswith(key):
            return line.split(":", 1)[1].strip()
    return ""


def ratios(results):
    by = {(r["request"], r["concurrency"], r["target"]): r for r in results}
    out = []
    for (req, c, t), r in by.items():
        if t != "portcullis":
            continue
        n, d = by[(req, c, "nginx")], by[(req, c, "direct")]
        out.append({
            "request": req, "concurrency": c,
            "throughput_vs_nginx": r["rps"] / n["rps"] if n["rps"] else None,
            "throughput_vs_direct": r["rps"] / d["rps"] if d["rps"] else None,
            "added_p50_ms_vs_direct": r["p50_ms"] - d["p50_ms"],
            "added_p99_ms_vs_direct": r["p99_ms"] - d["p99_ms"],
            "added_p99_ms_vs_nginx": r["p99_ms"] - n["p99_ms"],
        })
    return out


def targets_met(report):
    rat = {(r["request"], r["concurrency"]): r for r in report["ratios"]}
    rows = []
    small64 = rat.get(("small ARM GET", 64))
    if small64:
        v = small64["throughput_vs_nginx"]
        rows.append(("small GET throughput at c=64 >= 0.8 x nginx", f"{v:.2f} x", v >= 0.8))
    small16 = rat.get(("small ARM GET", 16))
    if small16:
        v = small16["added_p99_ms_vs_direct"]
        rows.append(("added p99 over direct at c=16 < 1 ms", f"{v:.2f} ms", v < 1.0))
    for key, how in [("held", "HTTP/1.1"), ("held_h2", "HTTP/2")]:
        held = report.get(key)
        if held:
            v = held["peak_rss_mib"]
            rows.append((f"{held['held']} held approvals < 200 MB RSS ({how})", f"{v:.0f} MiB",
                         v * 1.048576 < 200))

    def micro(part):
        return next((m for m in report.get("micro", []) if part in m["id"]), None)

    p = micro("policy_decision/no_condition/200")
    if p:
        rows.append(("policy decision p50 < 5 us at 200 rules", fmt_us(p["median_us"]),
                     p["median_us"] < 5))
    t = micro("token validation, cached")
    if t:
        rows.append(("cached token validation < 2 us", fmt_us(t["median_us"]), t["median_us"] < 2))
    return rows


def markdown(report):
    m = report["machine"]
    lines = [
        "# Load harness results",
        "",
        f"Run {report['started']} at commit `{m['commit']}` by `scripts/bench.sh` "
        f"({report['duration_s']:.0f} s per load point, wrk over HTTPS with keep-alive).",
        "",
        f"Machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory']} memory, Linux {m['kernel']}, "
        f"load average {m['load_average_at_start'][0]:.2f} at the start; {m['nginx']}; "
        f"{m['wrk']}; {m['rustc']}. The load generator, the upstream and the proxy share the "
        "machine's cores, so absolute numbers are the machine's; the ratios are the point.",
        "",
        "Targets: **direct** = the simulator (fast mode); **nginx** = bare TLS reverse proxy "
        "(no auth, no policy, keep-alive upstream); **portcullis** = the full pipeline (token "
        "validation, 200-rule policy, masking, durable SQLite recording, info logs). CPU is the "
        "proxy's own (the simulator's for direct), per request; RSS is the peak during the point.",
        "",
        "Requests (answer sizes as each target sent them):",
        "",
    ]
    for rq in report.get("requests", []):
        sizes = ", ".join(f"{k} {v:,} B" for k, v in rq.get("sizes", {}).items())
        path = re.sub(r"/subscriptions/[^/]+", "/subscriptions/{sub}", rq["path"].split("?")[0])
        lines.append(f"- **{rq['name']}**: `{rq['method']} {path}` ({sizes})")
    lines += [
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for what, v, ok in targets_met(report):
        lines.append(f"| {what} | {v} | {'yes' if ok else '**no**'} |")
    lines += ["", "## Ratios (Portcullis against its peers, same run)", "",
              "| request | c | throughput vs nginx | throughput vs direct | added p50 vs direct | added p99 vs direct | added p99 vs nginx |",
              "|---|---:|---:|---:|---:|---:|---:|"]
    for r in report["ratios"]:
        lines.append(
            f"| {r['request']} | {r['concurrency']} | {r['throughput_vs_nginx']:.2f} x | "
            f"{r['throughput_vs_direct']:.2f} x | {r['added_p50_ms_vs_direct']:+.2f} ms | "
            f"{r['added_p99_ms_vs_direct']:+.2f} ms | {r['added_p99_ms_vs_nginx']:+.2f} ms |")
    lines += ["", "## Every point", "",
              "| request | c | target | req/s | p50 ms | p99 ms | p99.9 ms | CPU us/req | peak RSS MiB | errors |",
              "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in report["results"]:
        errs = sum(r["errors"].values())
        lines.append(
            f"| {r['request']} | {r['concurrency']} | {r['target']} | {r['rps']:.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['p999_ms']:.2f} | "
            f"{(r['cpu_us_per_request'] or 0):.0f} | {r['peak_rss_mib']:.0f} | {errs} |")
    for key in ["held", "held_h2"]:
        held = report.get(key)
        if not held:
            continue
        how = (f"over {held['connections']} HTTP/2 connections" if held["http2"]
               else "over HTTP/1.1, one connection each")
        if key == "held":
            lines += ["", "## Held approvals", ""]
        lines += [f"- {held['held']} requests held at once {how}, by a fresh gateway: all held "
                  f"after {held['hold_s']:.1f} s; gateway RSS {held['rss_before_mib']:.0f} MiB "
                  f"before, {held['peak_rss_mib']:.0f} MiB with all held "
                  f"({held['kib_per_held']:.1f} KiB per held request, connections included); "
                  f"approved through the admin API ({held['approve_parallel']} at a time) and "
                  f"all {held['completed']} completed {held['release_s']:.1f} s after the first "
                  f"approval (approving took {held['approve_s']:.1f} s of it)."]
    if report.get("micro"):
        lines += ["", f"## Micro-benchmarks (criterion, {report['micro_seconds']} s each, medians)", "",
                  "| benchmark | median | 95% interval |", "|---|---:|---|"]
        for mrow in report["micro"]:
            lines.append(f"| {mrow['id']} | {fmt_us(mrow['median_us'])} | "
                         f"{fmt_us(mrow['low_us'])} .. {fmt_us(mrow['high_us'])} |")
    lines += ["", "Reproduce: `scripts/bench.sh` (options: `scripts/bench.sh --help`).", ""]
    return "\n".join(lines)


# --- main ----------------------------------------------------------------------------------


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=3, help="seconds per load point (3)")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--held", type=int, default=10000, help="requests held at once (10000; 0 skips)")
    ap.add_argument("--held-h2-connections", type=int, default=100,
                    help="then again over this many HTTP/2 connections (100; 0 skips)")
    ap.add_argument("--list-bytes", type=int, default=1 << 20, help="size of the large list (1 MiB)")
    ap.add_argument("--no-micro", action="store_true", help="skip the criterion benches")
    ap.add_argument("--micro-seconds", type=int, default=1, help="criterion measurement time (1)")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results")
    ap.add_argument("--keep", action="store_true", help="keep the run directory (logs, state)")
    ap.add_argument("--profile", action="store_true",
                    help="record the gateway with perf during its points (perf-*.data in --out)")
    ap.add_argument("--requests", nargs="+", help="only these requests (by name prefix)")
    args = ap.parse_args()

    args.out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.timezone.utc)
    t0 = time.time()
    run = Path(tempfile.mkdtemp(prefix="portcullis-bench-"))
    services = []
    report = {"started": started.strftime("%Y-%m-%d %H:%M UTC"), "duration_s": args.duration,
              "machine": machine()}
    try:
        sim, state = start_sim(run, args)
        services.append(sim)
        sim_url = state["url"]
        sim_port = int(sim_url.rsplit(":", 1)[1])
        ctx_sim = tls_context(run / "sim" / "ca.pem")
        sub = state["subscription_id"]
        arm_token = mint(sim_url, ctx_sim, "portcullis-baseline", ARM)
        vault_token = mint(sim_url, ctx_sim, "portcullis-baseline", VAULT)
        gw_token = mint(sim_url, ctx_sim, "agent", GATEWAY_API)
        vms = seed(sim_url, ctx_sim, sub, arm_token, args.list_bytes)
        log(f"simulator at {sim_url}; bench-rg holds {vms} VMs")

        nginx, nginx_port = start_nginx(run, sim_port)
        services.append(nginx)
        wait_until("nginx", lambda: (nginx.check(), socket.create_connection(("127.0.0.1", nginx_port)).close() or True)[1])

        gw_port, admin_port = free_port(), free_port()
        gateway_config(run, state, gw_port, admin_port)
        gw, gw_ca = start_gateway(run, "portcullis", admin_port)
        services.append(gw)

        body_file = run / "put-body.json"
        body_file.write_text(json.dumps({"location": "eastus", "tags": {
            "owner": "bench", "purpose": "a PUT with a JSON body", "cost-center": "0000"}}))
        rg = f"/subscriptions/{sub}/resourceGroups"
        scenarios = [
            {"name": "small ARM GET", "method": "GET", "token": "arm",
             "path": f"{rg}/demo-rg?api-version=2022-09-01"},
            {"name": "Key Vault secret", "method": "GET", "token": "vault",
             "path": "/keyvault/demo-kv/secrets/db-password?api-version=7.4"},
            {"name": "1 MB list", "method": "GET", "token": "arm",
             "path": f"{rg}/bench-rg/providers/Microsoft.Compute/virtualMachines?api-version=2024-07-01"},
            {"name": "PUT JSON", "method": "PUT", "token": "arm", "body_file": str(body_file),
             "path": f"{rg}/bench-put-rg?api-version=2022-09-01"},
        ]
        targets = {
            "direct": {"base": sim_url, "service": sim,
                       "tokens": {"arm": arm_token, "vault": vault_token}},
            "nginx": {"base": f"https://127.0.0.1:{nginx_port}", "service": nginx,
                      "tokens": {"arm": arm_token, "vault": vault_token}},
            "portcullis": {"base": f"https://127.0.0.1:{gw_port}", "service": gw,
                           "tokens": {"arm": gw_token, "vault": gw_token}},
        }
        # Every target answers every request alike before anything is measured.
        ctx_any = unverified_context()
        for sc in scenarios:
            body = json.loads(Path(sc["body_file"]).read_text()) if "body_file" in sc else None
            for name, t in targets.items():
                s, b = http(sc["method"], t["base"] + sc["path"], ctx_any, t["tokens"][sc["token"]], body)
                if not 200 <= s < 300:
                    raise SystemExit(f"{name} answered {s} to {sc['name']}: {b[:400]!r}")
                sc.setdefault("sizes", {})[name] = len(b)
                if name == "portcullis" and sc["name"] == "Key Vault secret":
                    assert b"[masked:" in b, "the secret is masked"
        if args.requests:
            scenarios = [sc for sc in scenarios
                         if any(sc["name"].lower().startswith(p.lower()) for p in args.requests)]
        report["requests"] = [{k: v for k, v in sc.items() if k != "body_file"} for sc in scenarios]
        log("every target answers; measuring")
        report["results"] = run_load(run, args, targets, scenarios)
        report["ratios"] = ratios(report["results"])
        gw.stop()
        services.remove(gw)
        nginx.stop()
        services.remove(nginx)
        if args.held > 0:
            log(f"holding {args.held} requests")
            report["held"] = held_scale(run, args, state, ctx_sim, admin_port, args.held)
            log(f"held: {report['held']}")
            if 0 < args.held_h2_connections < args.held:
                report["held_h2"] = held_scale(run, args, state, ctx_sim, admin_port,
                                               args.held_h2_connections)
                log(f"held over HTTP/2: {report['held_h2']}")
        if not args.no_micro:
            report["micro_seconds"] = args.micro_seconds
            report["micro"] = micro_benchmarks(args)
    finally:
        for s in reversed(services):
            s.stop()
        if not args.keep:
            shutil.rmtree(run, ignore_errors=True)
        else:
            log(f"run directory kept: {run}")
    report["wall_s"] = time.time() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "latest.md").write_text(markdown(report))
    log(f"done in {report['wall_s']:.0f} s: {args.out / 'latest.md'}")
    for what, v, ok in targets_met(report):
        log(f"{'met   ' if ok else 'NOT met'} {what}: {v}")


if __name__ == "__main__":
    main()
