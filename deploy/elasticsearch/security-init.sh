#!/usr/bin/env bash
# Least-privilege Elasticsearch roles and one user per Newsflow service (docker-compose.yml's
# es-init). Only this one-shot service knows the `elastic` superuser's password; every other
# service logs in as its own user, with only the indices and actions it needs. Idempotent:
# roles are replaced and passwords set again on every run, so a changed .env takes effect.
# The index names assume NEWSFLOW_INDEX_PREFIX=newsflow (INDEX_PREFIX here if it differs).
set -euo pipefail

ES_URL=${ES_URL:-http://elasticsearch:9200}
P=${INDEX_PREFIX:-newsflow}

call() { # METHOD PATH JSON
  curl -fsS -u "elastic:${ELASTIC_PASSWORD}" -H 'Content-Type: application/json' \
    -X "$1" "${ES_URL}/$2" -d "$3" >/dev/null
}
role() { call PUT "_security/role/$1" "$2"; }
user() { # NAME PASSWORD ROLE (passwords: letters, digits, '-' and '_')
  call PUT "_security/user/$1" "{\"password\": \"$2\", \"roles\": [\"$3\"]}"
}

# newsflow init (and operators' CLI runs: backfill, reindex): templates, indices, aliases.
role newsflow_init "{
  \"cluster\": [\"monitor\", \"manage_index_templates\"],
  \"indices\": [{\"names\": [\"${P}-*\"],
    \"privileges\": [\"create_index\", \"manage\", \"read\", \"write\", \"view_index_metadata\"]}]
}"
# The index worker: articles and stories, documents only.
role newsflow_index "{
  \"cluster\": [\"monitor\"],
  \"indices\": [{\"names\": [\"${P}-articles*\", \"${P}-stories*\"],
    \"privileges\": [\"read\", \"write\", \"view_index_metadata\"]}]
}"
# The alert worker: reads watches and stories, writes alert records and the percolator index.
role newsflow_alert "{
  \"cluster\": [\"monitor\"],
  \"indices\": [
    {\"names\": [\"${P}-watches\", \"${P}-articles*\", \"${P}-stories*\"],
      \"privileges\": [\"read\", \"view_index_metadata\"]},
    {\"names\": [\"${P}-alerts\"],
      \"privileges\": [\"read\", \"write\", \"maintenance\", \"view_index_metadata\"]},
    {\"names\": [\"${P}-watch-queries\"],
      \"privileges\": [\"create_index\", \"read\", \"write\", \"view_index_metadata\"]}]
}"
# The webhook worker: which watches exist, and which alerts the alert worker recorded.
role newsflow_webhook "{
  \"indices\": [{\"names\": [\"${P}-watches\", \"${P}-alerts\"],
    \"privileges\": [\"read\", \"view_index_metadata\"]}]
}"
# The search API: reads articles and stories; registers, rotates and deletes watches.
role newsflow_api "{
  \"cluster\": [\"monitor\"],
  \"indices\": [
    {\"names\": [\"${P}-articles*\", \"${P}-stories*\", \"${P}-alerts\"],
      \"privileges\": [\"read\", \"view_index_metadata\"]},
    {\"names\": [\"${P}-watches\"], \"privileges\": [\"read\", \"write\", \"view_index_metadata\"]}]
}"
# Airflow's maintenance DAG: index checks and retention (deletes old documents).
role newsflow_maintenance "{
  \"cluster\": [\"monitor\"],
  \"indices\": [{\"names\": [\"${P}-articles*\", \"${P}-stories*\"],
    \"privileges\": [\"read\", \"delete\", \"maintenance\", \"monitor\", \"view_index_metadata\"]}]
}"

user newsflow-init "${ES_INIT_PASSWORD}" newsflow_init
user newsflow-index "${ES_INDEX_PASSWORD}" newsflow_index
user newsflow-alert "${ES_ALERT_PASSWORD}" newsflow_alert
user newsflow-webhook "${ES_WEBHOOK_PASSWORD}" newsflow_webhook
user newsflow-api "${ES_API_PASSWORD}" newsflow_api
user newsflow-airflow "${ES_AIRFLOW_PASSWORD}" newsflow_maintenance
echo "es-init: roles and users in place"
