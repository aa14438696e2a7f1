#!/usr/bin/env bash
# Checks the Prometheus alert rules and runs their unit tests:
#   promtool check rules deploy/prometheus/alerts.yml
#   promtool test rules  deploy/prometheus/alerts.test.yml
# and checks the Prometheus and Alertmanager configs that load them. Installs Debian's
# `prometheus` package (which ships promtool) when promtool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source=scripts/lib/apt.sh
. scripts/lib/apt.sh

command -v promtool >/dev/null 2>&1 || apt_install prometheus
echo "[alerts] $(promtool --version 2>&1 | head -n1)"

echo "[alerts] promtool check rules deploy/prometheus/alerts.yml"
promtool check rules deploy/prometheus/alerts.yml

echo "[alerts] promtool check config deploy/prometheus/prometheus.yml"
# The config names its rule file relative to itself, as the compose mount lays it out.
promtool check config --syntax-only deploy/prometheus/prometheus.yml

if command -v amtool >/dev/null 2>&1; then
  echo "[alerts] amtool check-config deploy/alertmanager/alertmanager.yml"
  amtool check-config deploy/alertmanager/alertmanager.yml
fi

echo "[alerts] promtool test rules deploy/prometheus/alerts.test.yml"
promtool test rules deploy/prometheus/alerts.test.yml
