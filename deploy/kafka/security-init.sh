#!/usr/bin/env bash
# SCRAM users and ACLs for docker-compose.yml's Kafka (the kafka-init one-shot service).
# The broker authorizes every request (StandardAuthorizer, nothing allowed without an ACL);
# only `admin` (PLAIN, the brokers' and controllers' own account) is a super user. Each
# service gets its own SCRAM-SHA-512 user with exactly what the topology (newsflow/topology.py)
# gives its stage: read its input with its consumer group, write its outputs and the dead
# letters. tests/unit/test_compose.py holds the `allow` lines below to the topology.
# Topic names are the settings' defaults; change them here too if NEWSFLOW_TOPIC_* differ.
# Idempotent: passwords are set again and ACLs added again on every run.
set -euo pipefail

BOOTSTRAP=${BOOTSTRAP:-kafka:9092}
ADMIN_CONFIG=/tmp/newsflow-admin.properties
umask 077
printf '%s\n' 'security.protocol=SASL_PLAINTEXT' 'sasl.mechanism=PLAIN' \
  "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"admin\" password=\"${ADMIN_PASSWORD}\";" \
  > "${ADMIN_CONFIG}"

scram() { # USER PASSWORD
  /opt/kafka/bin/kafka-configs.sh --bootstrap-server "${BOOTSTRAP}" \
    --command-config "${ADMIN_CONFIG}" --alter --entity-type users --entity-name "$1" \
    --add-config "SCRAM-SHA-512=[iterations=8192,password=$2]" >/dev/null
}
allow() { # USER topic|group NAME[*] OPERATION... (a trailing * : every name with that prefix)
  local user=$1 kind=$2 name=$3 pattern=literal
  shift 3
  if [[ ${name} == *'*' ]]; then name=${name%'*'} pattern=prefixed; fi
  local operations=()
  for operation in "$@"; do operations+=(--operation "${operation}"); done
  /opt/kafka/bin/kafka-acls.sh --bootstrap-server "${BOOTSTRAP}" \
    --command-config "${ADMIN_CONFIG}" --add --allow-principal "User:${user}" \
    "--${kind}" "${name}" --resource-pattern-type "${pattern}" "${operations[@]}" >/dev/null
}

scram newsflow-ops "${OPS_PASSWORD}"
scram newsflow-airflow "${AIRFLOW_PASSWORD}"
scram newsflow-enrich "${ENRICH_PASSWORD}"
scram newsflow-dedup "${DEDUP_PASSWORD}"
scram newsflow-index "${INDEX_PASSWORD}"
scram newsflow-alert "${ALERT_PASSWORD}"
scram newsflow-webhook "${WEBHOOK_PASSWORD}"

# newsflow init and operators' commands (dlq replay, backfill): the pipeline's topics and groups.
allow newsflow-ops topic 'newsflow.*' All
allow newsflow-ops group 'newsflow-*' All
# Airflow: ingest publishes raw pages; the maintenance DAG replays dead letters to the stages'
# inputs (newsflow.dlq replays only to those).
allow newsflow-airflow topic newsflow.raw-pages.v1 Write Describe
allow newsflow-airflow topic newsflow.dead-letters.v1 Read Describe
allow newsflow-airflow group newsflow-maintenance-dlq Read
allow newsflow-airflow topic newsflow.articles.v1 Write Describe
allow newsflow-airflow topic newsflow.deduped-articles.v1 Write Describe
allow newsflow-airflow topic newsflow.alerts.v1 Write Describe
# One user per stage: its input and group, its outputs, the dead letters.
allow newsflow-enrich topic newsflow.raw-pages.v1 Read Describe
allow newsflow-enrich group newsflow-enrich Read
allow newsflow-enrich topic newsflow.articles.v1 Write Describe
allow newsflow-enrich topic newsflow.dead-letters.v1 Write Describe
allow newsflow-dedup topic newsflow.articles.v1 Read Describe
allow newsflow-dedup group newsflow-dedup Read
allow newsflow-dedup topic newsflow.deduped-articles.v1 Write Describe
allow newsflow-dedup topic newsflow.dead-letters.v1 Write Describe
allow newsflow-index topic newsflow.deduped-articles.v1 Read Describe
allow newsflow-index group newsflow-index Read
allow newsflow-index topic newsflow.dead-letters.v1 Write Describe
allow newsflow-alert topic newsflow.deduped-articles.v1 Read Describe
allow newsflow-alert group newsflow-alert Read
allow newsflow-alert topic newsflow.alerts.v1 Write Describe
allow newsflow-alert topic newsflow.dead-letters.v1 Write Describe
allow newsflow-webhook topic newsflow.alerts.v1 Read Describe
allow newsflow-webhook group newsflow-webhook Read
allow newsflow-webhook topic newsflow.dead-letters.v1 Write Describe
echo "kafka-init: users and ACLs in place"
