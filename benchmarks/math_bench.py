"""Benchmark: gjax full-covariance mixtures vs a naive explicit-inverse reference.

Times, on the default JAX backend (CPU here), in float32:

* ``mixture_log_prob``   -- gjax (one triangular solve per component with the
  Cholesky factor) vs a naive reference that forms ``Σ_k = L_k L_kᵀ``, inverts
  it with ``jnp.linalg.inv``, takes ``jnp.linalg.slogdet`` and evaluates the
  quadratic forms with the inverse;
* ``mixture_conditional`` (context = first ``d // 2`` dims) -- gjax (reuses the
  context solve, conditional factor = trailing block of ``L``) vs the textbook
  formulas ``m_k = μ_t + Σ_tc Σ_cc⁻¹ (z_c - μ_c)``,
  ``S_k = Σ_tt - Σ_tc Σ_cc⁻¹ Σ_ct`` with explicit inverses, a fresh Cholesky of
  ``S_k``, and the weights from a separately computed naive context density.

Both implementations receive the same inputs ``(x, logits, means, L)``; the
naive one builds ``Σ = L Lᵀ`` inside the timed function. Every point is first
checked for numerical agreement (``np.testing.assert_allclose``), then timed:
``jax.jit(f).lower(...).compile()`` (reported as compile time), one warm-up
call, then the median of several repeats with ``block_until_ready``.

One axis is swept at a time around a base point (B=1024, K=8, d=64), plus a
few corners; the scaling exponent along each sweep is the least-squares slope
of log(time) against log(size).

Usage::

  python benchmarks/math_bench.py                 # full run (~several minutes on 2 cores)
  python benchmarks/math_bench.py --quick         # smoke run (<1 min)
  python benchmarks/math_bench.py --out results/math_bench.md
"""

from __future__ import annotations

import argparse
import datetime
import functools
import os
import platform
import statistics
import subprocess
import sys
import time

# JAX's CPU LAPACK kernels (triangular solve, LU, Cholesky) run in scipy's
# OpenBLAS. Its worker threads synchronise badly when the cores are shared with
# other processes: on the 2-core dev box each LAPACK call then stalled for
# ~4-10 ms (a K=8, d=64 log-density took ~85 ms instead of ~2 ms). So LAPACK is
# single-threaded here unless the caller exports OPENBLAS_NUM_THREADS; XLA's own
# ops (dots, reductions) still use every core. Must happen before numpy/jax load.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import gjax  # noqa: E402,F401  (first: gjax's start-up settings reach jax before it starts)
from gjax.math.gaussian import LOG_2PI  # noqa: E402
from gjax.math.mixture import mixture_conditional, mixture_log_prob  # noqa: E402

BASE = dict(B=1024, K=8, d=64)
FULL_SWEEPS = {
  "B": [256, 1024, 4096, 8192],
  "K": [1, 4, 8, 16, 64],
  "d": [32, 64, 128, 256, 512],
}
FULL_CORNERS = [
  dict(B=256, K=1, d=32),
  dict(B=8192, K=64, d=64),
  dict(B=8192, K=8, d=512),
  dict(B=1024, K=64, d=512),
  dict(B=8192, K=64, d=256),
]
QUICK_SWEEPS = {"B": [256, 1024], "K": [1, 8], "d": [32, 64]}
QUICK_CORNERS: list[dict] = []

# float32 agreement tolerances (each Σ_k has condition number <= ~3).
RTOL = 1e-3
ATOL = 1e-3


# --------------------------------------------------------------------------
# Naive reference implementations.
# --------------------------------------------------------------------------
def _naive_component_log_probs(x, logits, means, sigma):
  """``log π_k + log N(x; μ_k, Σ_k)`` with an explicit inverse and slogdet."""
  d = x.shape[-1]
  prec = jnp.linalg.inv(sigma)  # [K, d, d]
  _, log_det = jnp.linalg.slogdet(sigma)  # [K]
  resid = x[:, None, :] - means  # [B, K, d]
  proj = jnp.einsum("bki,kij->bkj", resid, prec)
  quad = jnp.sum(proj * resid, axis=-1)  # [B, K]
  log_norm = -0.5 * (d * LOG_2PI + log_det + quad)
  return jax.nn.log_softmax(logits) + log_norm


def naive_mixture_log_prob(x, logits, means, scale_tril):
  sigma = scale_tril @ jnp.swapaxes(scale_tril, -1, -2)
  return jax.nn.logsumexp(_naive_component_log_probs(x, logits, means, sigma), axis=-1)


def naive_mixture_conditional(z_c, logits, means, scale_tril, num_context):
  """Textbook conditional mixture; returns (logits, means, chol(S), log p(z_c))."""
  c = num_context
  sigma = scale_tril @ jnp.swapaxes(scale_tril, -1, -2)
  s_cc, s_ct = sigma[:, :c, :c], sigma[:, :c, c:]
  s_tc, s_tt = sigma[:, c:, :c], sigma[:, c:, c:]
  # Weights from a separately computed context density (its own inverse).
  log_w = _naive_component_log_probs(z_c, logits, means[:, :c], s_cc)
  context_log_prob = jax.nn.logsumexp(log_w, axis=-1)
  # Conditional moments with an explicit inverse of Σ_cc.
  gain = s_tc @ jnp.linalg.inv(s_cc)  # [K, d_t, d_c]
  resid_c = z_c[:, None, :] - means[:, :c]  # [B, K, d_c]
  cond_means = means[:, c:] + jnp.einsum("kij,bkj->bki", gain, resid_c)
  schur = s_tt - gain @ s_ct
  schur = 0.5 * (schur + jnp.swapaxes(schur, -1, -2))
  cond_tril = jnp.linalg.cholesky(schur)  # fresh factorisation, to score / sample
  return log_w - context_log_prob[:, None], cond_means, cond_tril, context_log_prob


def gjax_mixture_log_prob(x, logits, means, scale_tril):
  return mixture_log_prob(x, logits, means, scale_tril, "full")


def gjax_mixture_conditional(z_c, logits, means, scale_tril, num_context):
  out = mixture_conditional(z_c, logits, means, scale_tril, num_context, "full")
  return out.logits, out.means, out.cov, out.context_log_prob


# --------------------------------------------------------------------------
# Inputs, agreement check and timing.
# --------------------------------------------------------------------------
def make_inputs(b, k, d, seed=0):
  """Well-conditioned random mixture and points drawn from it (float32)."""
  rng = np.random.default_rng(seed + 7919 * b + 104729 * k + 1299709 * d)
  w = rng.normal(size=(k, d, d))
  # Σ_k = s_k (I + W Wᵀ / (2d)): eigenvalues in ~[s_k, 3 s_k], s_k in [0.5, 2].
  scales = rng.uniform(0.5, 2.0, size=k)
  sigma = scales[:, None, None] * (np.eye(d) + w @ np.swapaxes(w, -1, -2) / (2 * d))
  tril = np.linalg.cholesky(sigma)
  means = 0.5 * rng.normal(size=(k, d))
  logits = rng.normal(size=k)
  comp = rng.integers(0, k, size=b)
  eps = rng.normal(size=(b, d))
  x = np.empty((b, d))
  for j in range(k):  # per component, so no [B, d, d] gather of the factors
    idx = comp == j
    x[idx] = means[j] + eps[idx] @ tril[j].T
  f32 = lambda a: jnp.asarray(a, dtype=jnp.float32)  # noqa: E731
  return f32(x), f32(logits), f32(means), f32(tril)


def _block(out):
  return jax.block_until_ready(out)


def _compile(fn, args):
  t0 = time.perf_counter()
  compiled = jax.jit(fn).lower(*args).compile()
  return compiled, time.perf_counter() - t0


def _cpu_ticks():
  """(busy ticks of the whole machine, ticks used by this process)."""
  with open("/proc/stat") as f:
    fields = [int(v) for v in f.readline().split()[1:]]
  # user nice system idle iowait irq softirq steal ...
  busy = sum(fields[:8]) - fields[3] - fields[4]
  with open("/proc/self/stat") as f:
    stat = f.read().rsplit(")", 1)[1].split()
  own = int(stat[11]) + int(stat[12])  # utime, stime
  return busy, own


class ForeignLoad:
  """Fraction of the machine's CPU time used by *other* processes over an interval."""

  def __enter__(self):
    self.t0 = time.perf_counter()
    try:
      self.ticks0 = _cpu_ticks()
    except (OSError, ValueError, IndexError):
      self.ticks0 = None
    return self

  def __exit__(self, *exc):
    self.fraction = float("nan")
    if self.ticks0 is None:
      return False
    busy1, own1 = _cpu_ticks()
    elapsed = time.perf_counter() - self.t0
    hz = os.sysconf("SC_CLK_TCK")
    foreign = (busy1 - self.ticks0[0]) - (own1 - self.ticks0[1])
    self.fraction = max(0.0, foreign / (hz * elapsed * (os.cpu_count() or 1)))
    return False


def compile_and_time_pair(fns, args, window_s, min_rep, max_rep, retry):
  """Compiles each fn, warms it up, then times them interleaved (A, B, A, B, ...).

  Interleaving makes both implementations see the same background load, so
  the ratio stays meaningful on a shared machine. The loop runs at least
  ``min_rep`` pairs and at least ``window_s`` seconds (at most ``max_rep`` pairs). The share of the machine's
  CPU used by other processes during the timing loop is measured from
  /proc/stat; when it exceeds ``retry["max_foreign"]`` the loop is repeated
  (after a pause, while the retry budget lasts) and the least-disturbed
  attempt is kept. Returns, per fn, its warm-up output, compile seconds,
  median and min seconds, repeats and that foreign-load fraction.
  """
  compiled, compile_s, outs, first = [], [], [], []
  for fn in fns:
    c, cs = _compile(fn, args)
    t0 = time.perf_counter()
    outs.append(_block(c(*args)))  # warm-up
    first.append(time.perf_counter() - t0)
    compiled.append(c)
    compile_s.append(cs)
  best = None
  for attempt in range(1 + retry["max_attempts_extra"]):
    times = [[] for _ in fns]
    with ForeignLoad() as load:
      start = time.perf_counter()
      # At least min_rep pairs, and keep going until the loop lasts window_s (so
      # the tick-based foreign-load measurement is meaningful), up to max_rep.
      while len(times[0]) < min_rep or (time.perf_counter() - start < window_s and len(times[0]) < max_rep):
        for c, ts in zip(compiled, times):
          t0 = time.perf_counter()
          _block(c(*args))
          ts.append(time.perf_counter() - t0)
    if best is None or load.fraction < best[1]:
      best = (times, load.fraction, attempt + 1)
    if not load.fraction > retry["max_foreign"] or retry["budget_s"] <= 0:
      break
    time.sleep(retry["pause_s"])
    retry["budget_s"] -= retry["pause_s"] + sum(map(sum, times))
  times, foreign, attempts = best
  return [
    dict(
      out=o,
      compile_s=cs,
      median_s=statistics.median(ts),
      min_s=min(ts),
      reps=len(ts),
      foreign=foreign,
      attempts=attempts,
    )
    for o, cs, ts in zip(outs, compile_s, times)
  ]


def check_close(name, got, want, rtol=RTOL, atol=ATOL):
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, err_msg=name)
  return float(np.max(np.abs(got - want) / (atol + rtol * np.abs(want))))


def bench_point(b, k, d, window_s, min_rep, max_rep, retry):
  x, logits, means, tril = make_inputs(b, k, d)
  c = d // 2
  z_c = x[:, :c]
  rows = []
  cases = [
    ("mixture_log_prob", gjax_mixture_log_prob, naive_mixture_log_prob, (x, logits, means, tril)),
    (
      "mixture_conditional",
      functools.partial(gjax_mixture_conditional, num_context=c),
      functools.partial(naive_mixture_conditional, num_context=c),
      (z_c, logits, means, tril),
    ),
  ]
  for name, f_gjax, f_naive, args in cases:
    load1 = os.getloadavg()[0]
    res_g, res_n = compile_and_time_pair((f_gjax, f_naive), args, window_s, min_rep, max_rep, retry)
    out_g, out_n = res_g.pop("out"), res_n.pop("out")
    if name == "mixture_log_prob":
      worst = check_close(f"{name} B={b} K={k} d={d}", out_g, out_n)
    else:
      parts = ("logits", "means", "cond_tril", "context_log_prob")
      worst = max(check_close(f"{name}.{p} B={b} K={k} d={d}", g, n) for p, g, n in zip(parts, out_g, out_n))
    del out_g, out_n
    ratio = res_n["median_s"] / res_g["median_s"]
    for impl, res in (("gjax", res_g), ("naive", res_n)):
      rows.append(
        dict(
          function=name,
          impl=impl,
          B=b,
          K=k,
          d=d,
          ms=1e3 * res["median_s"],
          min_ms=1e3 * res["min_s"],
          compile_s=res["compile_s"],
          reps=res["reps"],
          ratio=ratio,
          check=worst,
          load1=load1,
          foreign=res["foreign"],
          attempts=res["attempts"],
        )
      )
  return rows


def fit_exponent(sizes, times):
  slope, _ = np.polyfit(np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float)), 1)
  return float(slope)


# --------------------------------------------------------------------------
# Reporting.
# --------------------------------------------------------------------------
def hardware_line():
  model = "unknown"
  try:
    with open("/proc/cpuinfo") as f:
      for line in f:
        if line.startswith("model name"):
          model = line.split(":", 1)[1].strip()
          break
  except OSError:
    pass
  try:
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    nproc = str(os.cpu_count())
  return f"nproc={nproc}, CPU: {model}, {platform.machine()}, Python {platform.python_version()}"


def blas_threads_line():
  """Thread counts of the BLAS/OpenMP libraries loaded in this process (threadpoolctl)."""
  try:
    from threadpoolctl import threadpool_info
  except ImportError:
    return "threadpoolctl not installed"
  return (
    "; ".join(
      f"{os.path.basename(i.get('filepath', '?'))}: {i.get('internal_api')} {i.get('num_threads')} thread(s)"
      for i in threadpool_info()
    )
    or "none loaded"
  )


def format_table(rows):
  head = (
    "| function | impl | B | K | d | median (ms) | min (ms) | naive/gjax (median) |"
    " compile (s) | repeats | other procs' CPU % | attempts | load avg 1 min |"
    " agreement (max err/tol) |"
  )
  sep = "|" + "|".join(["---"] * 14) + "|"
  lines = [head, sep]
  for r in rows:
    lines.append(
      f"| {r['function']} | {r['impl']} | {r['B']} | {r['K']} | {r['d']} | {r['ms']:.3f} |"
      f" {r['min_ms']:.3f} | {r['ratio']:.2f} | {r['compile_s']:.2f} | {r['reps']} |"
      f" {100 * r['foreign']:.0f} | {r['attempts']} | {r['load1']:.2f} | {r['check']:.1e} |"
    )
  return "\n".join(lines)


def exponents(results, sweeps, stat="ms"):
  """{(function, impl, axis): slope} along each one-axis sweep through BASE."""
  out = {}
  for axis, values in sweeps.items():
    for function in ("mixture_log_prob", "mixture_conditional"):
      for impl in ("gjax", "naive"):
        pts = []
        for v in values:
          key = dict(BASE, **{axis: v})
          pts.append(results[(key["B"], key["K"], key["d"], function, impl)][stat])
        out[(function, impl, axis)] = (fit_exponent(values, pts), values)
  return out


def format_exponents(exps, sweeps):
  lines = [
    "| function | impl | " + " | ".join(f"exponent in {a} ({', '.join(map(str, v))})" for a, v in sweeps.items()) + " |"
  ]
  lines.append("|" + "|".join(["---"] * (2 + len(sweeps))) + "|")
  for function in ("mixture_log_prob", "mixture_conditional"):
    for impl in ("gjax", "naive"):
      cells = [f"{exps[(function, impl, a)][0]:.2f}" for a in sweeps]
      lines.append(f"| {function} | {impl} | " + " | ".join(cells) + " |")
  return "\n".join(lines)


def main(argv=None):
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--quick", action="store_true", help="a few small points (<1 min smoke run)")
  parser.add_argument("--out", default=None, help="write the markdown report to this path")
  parser.add_argument("--no-corners", action="store_true", help="skip the corner points")
  parser.add_argument(
    "--max-foreign",
    type=float,
    default=0.15,
    help="re-time a point when other processes used more than this fraction"
    " of the machine's CPU during its timing loop (default 0.15)",
  )
  parser.add_argument(
    "--retry-budget", type=float, default=None, help="seconds that re-timing may spend in all (default 60, quick 10)"
  )
  parser.add_argument(
    "--cpus",
    default=None,
    help="comma-separated CPU ids to pin the process to (sched_setaffinity,"
    " before the JAX backend starts); default: all CPUs",
  )
  args = parser.parse_args(argv)
  if args.cpus:
    # Affinity is inherited by the threads XLA creates when the backend starts below.
    os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})
  cpus_line = f"CPU affinity: {sorted(os.sched_getaffinity(0))}"

  t_start = time.perf_counter()
  load_start = os.getloadavg()
  started = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
  command = "python " + " ".join([os.path.relpath(sys.argv[0])] + sys.argv[1:]) if argv is None else str(argv)
  print(f"command: {command}")
  print(f"date: {started}")
  print(f"hardware: {hardware_line()}; {cpus_line}")
  print(
    f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()},"
    f" OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')}"
  )
  print(f"load average at start (1, 5, 15 min): {load_start}")

  sweeps = QUICK_SWEEPS if args.quick else FULL_SWEEPS
  corners = [] if (args.quick or args.no_corners) else FULL_CORNERS
  window_s, min_rep, max_rep = (0.3, 3, 200) if args.quick else (1.0, 3, 500)
  budget = args.retry_budget if args.retry_budget is not None else (10.0 if args.quick else 60.0)
  retry = dict(max_foreign=args.max_foreign, budget_s=budget, pause_s=3.0, max_attempts_extra=4)

  points = []
  for axis, values in sweeps.items():
    for v in values:
      key = dict(BASE, **{axis: v})
      p = (key["B"], key["K"], key["d"])
      if p not in points:
        points.append(p)
  sweep_points = len(points)
  for cnr in corners:
    p = (cnr["B"], cnr["K"], cnr["d"])
    if p not in points:
      points.append(p)

  results, rows = {}, []
  for i, (b, k, d) in enumerate(points):
    t0 = time.perf_counter()
    point_rows = bench_point(b, k, d, window_s, min_rep, max_rep, retry)
    for r in point_rows:
      results[(b, k, d, r["function"], r["impl"])] = r
      rows.append(dict(r, corner=i >= sweep_points))
    msg = (
      ", ".join(f"{r['function']}/{r['impl']} {r['ms']:.2f} ms" for r in point_rows)
      + ", other procs' CPU "
      + "/".join(f"{100 * r['foreign']:.0f}%" for r in point_rows[::2])
    )
    print(f"[{i + 1}/{len(points)}] B={b} K={k} d={d}: {msg} ({time.perf_counter() - t0:.1f} s)", flush=True)

  table = format_table(rows)
  exps = exponents(results, sweeps)
  exp_table = format_exponents(exps, sweeps)
  exp_table_min = format_exponents(exponents(results, sweeps, "min_ms"), sweeps)
  load_end = os.getloadavg()
  blas_line = blas_threads_line()
  total = time.perf_counter() - t_start
  print()
  print(table)
  print()
  print(
    "Scaling exponents (least-squares slope of log time vs log size, other axes at the base "
    f"point B={BASE['B']}, K={BASE['K']}, d={BASE['d']}):"
  )
  print(exp_table)
  print()
  print("Same fit on the min times (less sensitive to background load):")
  print(exp_table_min)
  print()
  print(f"load average at end (1, 5, 15 min): {load_end}")
  print(f"BLAS thread pools at end: {blas_line}")
  print(f"total wall time: {total:.1f} s")

  if args.out:
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as f:
      f.write("# gjax mixture benchmark: triangular solves vs explicit inverses\n\n")
      f.write(f"- command: `{command}`\n")
      f.write(f"- date: {started}\n")
      f.write(f"- hardware: {hardware_line()}; {cpus_line}\n")
      f.write(
        f"- jax {jax.__version__}, backend {jax.default_backend()}, float32,"
        f" OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS')} (LAPACK calls"
        " single-threaded, XLA ops on all cores; see the note at the top of the script)\n"
      )
      f.write(f"- load average at start (1, 5, 15 min): {tuple(round(v, 2) for v in load_start)}\n")
      f.write(f"- load average at end (1, 5, 15 min): {tuple(round(v, 2) for v in load_end)}\n")
      f.write(f"- total wall time: {total:.1f} s\n")
      f.write(f"- BLAS thread pools at end (threadpoolctl): {blas_line}\n")
      f.write(
        f"- agreement checked per point with rtol={RTOL}, atol={ATOL}"
        " (last column: max |gjax-naive| / (atol + rtol|naive|), must be <= 1)\n"
      )
      f.write(
        "- timing: lower+compile reported separately, one warm-up call, then `repeats`"
        " calls of gjax and naive interleaved (gjax, naive, gjax, ...), each with"
        f" `block_until_ready` (at least {min_rep} pairs and {window_s} s of timing);"
        " median (and min) reported\n"
      )
      f.write("- mixture_conditional uses context = first d/2 dims\n")
      f.write(
        "- `other procs' CPU %`: share of the machine's CPU time used by other processes"
        " during the timing loop (from /proc/stat); a loop with more than"
        f" {100 * args.max_foreign:.0f}% is re-timed after a pause while a retry budget"
        " lasts, and the least-disturbed attempt is kept (`attempts`)\n\n"
      )
      f.write("## Timings\n\n")
      f.write(table + "\n\n")
      f.write("## Scaling exponents\n\n")
      f.write(
        "Least-squares slope of log(median time) vs log(size) along each one-axis sweep"
        f" (other axes at B={BASE['B']}, K={BASE['K']}, d={BASE['d']}).\n\n"
      )
      f.write(exp_table + "\n\n")
      f.write("Same fit on the min times (less sensitive to background load):\n\n")
      f.write(exp_table_min + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
  main()
