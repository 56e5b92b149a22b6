#!/usr/bin/env bash
# Writes the run record's secret for `kubectl apply -k deploy/k8s/overlays/...`: a random PostgreSQL password and the
# URL the nodes use (kustomize's secretGenerator reads it as the metamae-record secret). Run once per cluster:
#   deploy/k8s/make-record-secret.sh            # writes deploy/k8s/base/record.env
#   deploy/k8s/make-record-secret.sh FILE       # writes FILE
# An existing file is kept: the database keeps the password it was created with, so a new one would lock it out. To
# use an external PostgreSQL, write `url=postgresql://USER:PASSWORD@HOST:5432/DB` (and any `password=`) yourself.
set -euo pipefail
out="${1:-$(dirname "$0")/base/record.env}"
if [[ -e "$out" ]]; then
  echo "$out exists: kept (the database keeps the password it was created with)" >&2
  exit 0
fi
password="$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 32)"
if (( ${#password} < 24 )); then
  echo "could not make a password from /dev/urandom" >&2
  exit 1
fi
umask 077
printf 'password=%s\nurl=postgresql://metamae:%s@postgres:5432/metamae\n' "$password" "$password" > "$out"
echo "wrote $out (mode 600): the metamae-record secret's password and url" >&2
