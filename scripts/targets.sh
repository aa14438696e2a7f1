#!/usr/bin/env bash
# The hot-path targets table (issue #10) in one command: ROUNDS rounds (default 3) of
# `baseline`, `poll` and `join` back to back through scripts/cpu-split.sh, then `wrk-poll`
# (when wrk is installed) and a one-connection `poll`, with each round's ratios and a verdict
# per target on the medians.
#
# Usage: scripts/targets.sh [rounds]        (needs a release build: scripts/bench.sh builds one)
#
# Why rounds and medians: on a shared 2-core machine the same build's throughput swings by a
# fifth between minutes, and the ratios only mean something when their two runs are
# neighbours. Each round's ratios use that round's own `/healthz` run.
#
# The last line, "ceilings", is what the two throughput ratios would be if `poll` and `join`
# kept the cores as busy as `/healthz` does: /healthz's CPU per request over theirs, all three
# processes counted (gateway, Redis, and the load tool, which shares the 2 cores). A measured
# ratio below its ceiling is idle time (requests waiting on one another); a ceiling below a
# target means the CPU per request itself must fall.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
split() { bash scripts/cpu-split.sh "$@" 2>&1; }
# From cpu-split's output: "<req/s> <gateway µs per request> <Redis µs per request> <p99 ms>
# <load tool µs per request>".
figures() {
  awk '
    /^cpu % of one core/ { for (i = 1; i <= NF; i++) { if ($i == "gateway") g = $(i + 1); if ($i == "redis") r = $(i + 1); if ($i == "load") l = $(i + 1) } }
    /^requests .* req\/s/ { for (i = 1; i <= NF; i++) if ($(i + 1) == "req/s") rps = $i }
    /^Requests\/sec:/ { rps = $2 }
    /^latency ms/ { for (i = 1; i <= NF; i++) if ($i == "p99") p99 = $(i + 1) }
    /^ +99%/ { p99 = $2; if (p99 ~ /us$/) { sub(/us$/, "", p99); p99 /= 1000 } else if (p99 ~ /ms$/) sub(/ms$/, "", p99); else if (p99 ~ /s$/) { sub(/s$/, "", p99); p99 *= 1000 } }
    END { if (rps == 0) exit 1; printf "%.0f %.2f %.2f %s %.2f\n", rps, g * 1e4 / rps, r * 1e4 / rps, p99, l * 1e4 / rps }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
rows=$(mktemp)
trap 'rm -f "$rows"' EXIT
echo "commit $(git rev-parse --short HEAD), $(date -u +%FT%TZ), $rounds rounds"
printf '%-5s %22s %30s %30s %8s %8s %10s\n' round "/healthz req/s (gw µs)" "polls/s (gw µs, Redis µs)" "joins/s (gw µs, Redis µs)" poll÷base join÷base poll÷healthz
for r in $(seq 1 "$rounds"); do
  read -r b_rps b_gw _ _ b_load < <(split baseline --requests 1200000 | figures)
  read -r p_rps p_gw p_redis p_p99 p_load < <(split poll --requests 700000 | figures)
  read -r j_rps j_gw j_redis _ j_load < <(split join --users 500000 | figures)
  awk -v r="$r" -v b="$b_rps" -v bg="$b_gw" -v bl="$b_load" -v p="$p_rps" -v pg="$p_gw" -v pr="$p_redis" \
    -v pp="$p_p99" -v pl="$p_load" -v j="$j_rps" -v jg="$j_gw" -v jr="$j_redis" -v jl="$j_load" 'BEGIN {
      printf "%-5s %13d (%5.2f) %15d (%5.2f, %4.2f) %15d (%5.2f, %4.2f) %8.2f %8.2f %10.2f\n", r, b, bg, p, pg, pr, j, jg, jr, p / b, j / b, pg / bg
      # What the throughput ratios would be if both runs kept the cores equally busy: the
      # ratio of the CPU per request of all three processes (gateway, Redis, load tool).
      printf "      CPU per request, gateway + Redis + load tool: /healthz %.1f µs, poll %.1f, join %.1f; at equal use poll ÷ base %.2f, join ÷ base %.2f\n", bg + bl, pg + pr + pl, jg + jr + jl, (bg + bl) / (pg + pr + pl), (bg + bl) / (jg + jr + jl)
      printf "%f %f %f %f %f %f %f %f\n", p / b, j / b, pg / bg, pr, jr, pp, (bg + bl) / (pg + pr + pl), (bg + bl) / (jg + jr + jl) > "/dev/stderr" }' 2>>"$rows"
done
wrk_redis=""
if command -v wrk >/dev/null; then
  read -r _ w_gw w_redis w_p99 _ < <(split wrk-poll | figures)
  echo "wrk-poll: gateway $w_gw µs, Redis $w_redis µs per poll, p99 $w_p99 ms"
  wrk_redis=$w_redis
fi
read -r _ _ _ one_p99 _ < <(split poll --connections 1 --requests 25000 | figures)
echo "poll at one connection: p99 $one_p99 ms"
col() { awk -v c="$1" '{ print $c }' "$rows" | median; }
verdict() { awk -v v="$1" -v op="$2" -v t="$3" 'BEGIN { ok = (op == "<=") ? v <= t : v >= t; printf "%s", ok ? "met" : "MISSED" }'; }
pb=$(col 1) jb=$(col 2) ph=$(col 3) pr=$(col 4) jr=$(col 5) pp=$(col 6) pc=$(col 7) jc=$(col 8)
read -r pb jb ph pr jr pp < <(printf "%.2f %.2f %.2f %.2f %.2f %.2f\n" "$pb" "$jb" "$ph" "$pr" "$jr" "$pp")
echo "medians over $rounds rounds (target, verdict):"
echo "  Redis µs per poll, load tool   $pr (<= 4, $(verdict "$pr" "<=" 4))${wrk_redis:+; wrk $wrk_redis (<= 4, $(verdict "$wrk_redis" "<=" 4))}"
echo "  Redis µs per join              $jr (<= 8, $(verdict "$jr" "<=" 8))"
echo "  gateway per poll ÷ /healthz    $ph (<= 1.6, $(verdict "$ph" "<=" 1.6))"
echo "  poll ÷ baseline                $pb (>= 0.6, $(verdict "$pb" ">=" 0.6))"
echo "  join ÷ baseline                $jb (>= 0.5, $(verdict "$jb" ">=" 0.5))"
echo "  status p99 at 64 connections   $pp ms (<= 10, $(verdict "$pp" "<=" 10))"
echo "  status p99 at one connection   $one_p99 ms (<= 2, $(verdict "$one_p99" "<=" 2))"
printf "ceilings (the ratios if poll or join kept the cores as busy as /healthz does): poll ÷ baseline %.2f, join ÷ baseline %.2f\n" "$pc" "$jc"
