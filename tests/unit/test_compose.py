"""docker-compose.yml, checked without Docker: services, commands, variables, images."""

from __future__ import annotations

import re
import shlex
import tomllib
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml

from newsflow import topology
from newsflow.settings import Settings

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "docker-compose.yml"

EXPECTED_SERVICES = {
    "kafka",
    "elasticsearch",
    "postgres",
    "airflow-init",
    "airflow-api-server",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "newsflow-init",
    "enrich-worker",
    "dedup-worker",
    "index-worker",
}
ONE_SHOT = {"airflow-init", "newsflow-init", "kafka-init", "es-init"}
_PINNED_TAG = re.compile(r"^v?\d+(\.\d+)+([-.][A-Za-z0-9]+)*$")  # 4.4.0, 3.11.14-slim-bookworm
_SCRIPT_NEWSFLOW = re.compile(r"(?m)(?:^|[;&|(]|&&|\|\|)\s*(?:exec\s+)?newsflow\s+([^;&|\n]*)")
_INTERPOLATION = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    services = compose["services"]
    assert isinstance(services, dict)
    return services


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # ["KEY=value", "KEY"]
        return dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(key): str(value) for key, value in env.items()}


def _command(service: dict[str, Any]) -> list[str]:
    command = service.get("command") or []
    return shlex.split(command) if isinstance(command, str) else [str(c) for c in command]


def _image_ref(image: str) -> tuple[str, str]:
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all ("registry:5000/name" has a port, not a tag)
        return image, ""
    return name, tag


# --- services -----------------------------------------------------------------------------


def test_services_exist(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= EXPECTED_SERVICES


def test_service_commands(services: dict[str, dict[str, Any]]) -> None:
    assert _command(services["newsflow-init"]) == ["newsflow", "init"]
    assert _command(services["enrich-worker"]) == ["newsflow", "worker", "enrich"]
    assert _command(services["index-worker"]) == ["newsflow", "worker", "index"]
    for name, airflow_command in [
        ("airflow-api-server", "api-server"),
        ("airflow-scheduler", "scheduler"),
        ("airflow-dag-processor", "dag-processor"),
        ("airflow-triggerer", "triggerer"),
    ]:
        assert _command(services[name]) == ["airflow", airflow_command]
    assert "airflow db migrate" in " ".join(_command(services["airflow-init"]))


def test_one_worker_service_per_stage(services: dict[str, dict[str, Any]]) -> None:
    """The worker services are the stages of ``newsflow.topology``, no more, no fewer."""
    workers = {
        name
        for name, service in services.items()
        if name.endswith("-worker") or _command(service)[:2] == ["newsflow", "worker"]
    }
    assert workers == {row.service for row in topology.STAGES}
    for row in topology.STAGES:
        service = services[row.service]
        assert _command(service) == ["newsflow", "worker", row.name], row.service
        replicas = int(service.get("deploy", {}).get("replicas", 1))
        if row.single_owner:
            assert replicas == 1, f"{row.service} is its input's single owner"
        else:  # scaling by --scale or replicas needs no fixed name and no published port
            assert "container_name" not in service and not service.get("ports"), row.service


def test_one_shot_services_do_not_restart(services: dict[str, dict[str, Any]]) -> None:
    for name in ONE_SHOT:
        assert services[name].get("restart") in (None, "no"), name


def test_enrich_worker_is_scalable(services: dict[str, dict[str, Any]]) -> None:
    enrich = services["enrich-worker"]
    assert "container_name" not in enrich  # a fixed name would forbid --scale
    assert not enrich.get("ports")
    assert int(enrich.get("deploy", {}).get("replicas", 1)) >= 2


def test_airflow_setup(services: dict[str, dict[str, Any]]) -> None:
    for name in EXPECTED_SERVICES:
        if not name.startswith("airflow-"):
            continue
        service = services[name]
        env = _environment(service)
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql"), name
        assert any(str(v).startswith("./dags:") for v in service.get("volumes", [])), name
        assert service.get("build"), f"{name} runs the project image"
    depends = services["airflow-scheduler"]["depends_on"]
    assert depends["postgres"]["condition"] == "service_healthy"
    assert depends["airflow-init"]["condition"] == "service_completed_successfully"


def test_elasticsearch_security_on_without_literal_secret(
    services: dict[str, dict[str, Any]],
) -> None:
    env = _environment(services["elasticsearch"])
    assert env["xpack.security.enabled"] == "true"
    assert env["ELASTIC_PASSWORD"].startswith("${ELASTIC_PASSWORD")
    for service in services.values():
        for key, value in _environment(service).items():
            if re.search(r"(PASSWORD|SECRET|SECRET_KEY|FERNET_KEY)$", key):
                assert value.startswith("${"), f"{key} must come from the environment or .env"
            if key.endswith("SQL_ALCHEMY_CONN"):
                assert ":${POSTGRES_PASSWORD" in value


def test_kafka_is_kraft_combined(services: dict[str, dict[str, Any]]) -> None:
    env = _environment(services["kafka"])
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "healthcheck" in services["kafka"]


# --- least privilege: Elasticsearch users, Kafka SASL and ACLs -----------------------------

ES_INIT_SCRIPT = REPO / "deploy" / "elasticsearch" / "security-init.sh"
KAFKA_INIT_SCRIPT = REPO / "deploy" / "kafka" / "security-init.sh"
# Who talks to Elasticsearch (the others must not hold credentials for it).
ES_USERS = {
    "newsflow-init": "newsflow-init",
    "index-worker": "newsflow-index",
    "alert-worker": "newsflow-alert",
    "webhook-worker": "newsflow-webhook",
    "api": "newsflow-api",
    "airflow-scheduler": "newsflow-airflow",
}


def _kafka_security_checks(env: dict[str, str]) -> None:
    protocols = dict(
        item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(",")
    )
    assert set(protocols.values()) == {"SASL_PLAINTEXT"}, protocols
    assert env["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    assert env["KAFKA_ALLOW_EVERYONE_IF_NO_ACL_FOUND"] == "false"
    assert env["KAFKA_SUPER_USERS"] == "User:admin"
    assert env["KAFKA_LISTENER_NAME_EXTERNAL_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    for listener in ("INTERNAL", "CONTROLLER"):
        jaas = env[f"KAFKA_LISTENER_NAME_{listener}_PLAIN_SASL_JAAS_CONFIG"]
        # PLAIN knows the admin only, and its password comes from .env.
        assert re.findall(r"user_(\w+)=", jaas) == ["admin"]
        assert '"${KAFKA_ADMIN_PASSWORD' in jaas


def test_kafka_authenticates_and_authorizes_every_client(
    services: dict[str, dict[str, Any]],
) -> None:
    _kafka_security_checks(_environment(services["kafka"]))
    assert "command-config" in " ".join(services["kafka"]["healthcheck"]["test"])


def test_every_kafka_client_has_a_scram_user_of_its_own(
    services: dict[str, dict[str, Any]],
) -> None:
    users: dict[str, str] = {}
    for name, service in services.items():
        env = _environment(service)
        if "NEWSFLOW_KAFKA_BOOTSTRAP" not in env or name in ("api", "exporter"):
            continue
        assert env["NEWSFLOW_KAFKA_SECURITY_PROTOCOL"] == "SASL_PLAINTEXT", name
        assert env["NEWSFLOW_KAFKA_SASL_MECHANISM"] == "SCRAM-SHA-512", name
        assert env["NEWSFLOW_KAFKA_PASSWORD"].startswith("${KAFKA_"), name
        users[name] = env["NEWSFLOW_KAFKA_USERNAME"]
    for row in topology.STAGES:
        assert users[row.service] == f"newsflow-{row.name}", row.service
    assert users["newsflow-init"] == "newsflow-ops"
    assert users["airflow-scheduler"] == "newsflow-airflow"
    assert "kafka-init" in services["newsflow-init"]["depends_on"]


def _acl_grants() -> set[tuple[str, str, str, str]]:
    """(user, topic|group, name, operation) for every ``allow`` line of kafka-init's script."""
    grants = set()
    for line in KAFKA_INIT_SCRIPT.read_text(encoding="utf-8").splitlines():
        if line.startswith("allow "):
            user, kind, name, *operations = shlex.split(line)[1:]
            grants |= {(user, kind, name, operation) for operation in operations}
    return grants


def test_kafka_acls_give_each_stage_only_its_topology() -> None:
    settings = Settings()
    grants = _acl_grants()
    dead_letters = topology.topic_name(topology.DEAD_LETTERS, settings)
    for row in topology.STAGES:
        user = f"newsflow-{row.name}"
        expected = {
            (user, "topic", topology.topic_name(row.input, settings), "Read"),
            (user, "topic", topology.topic_name(row.input, settings), "Describe"),
            (user, "group", row.group_id, "Read"),
        }
        for output in (*row.outputs, topology.DEAD_LETTERS):
            name = topology.topic_name(output, settings)
            expected |= {(user, "topic", name, "Write"), (user, "topic", name, "Describe")}
        assert {g for g in grants if g[0] == user} == expected, row.name
    airflow = {g for g in grants if g[0] == "newsflow-airflow"}
    assert ("newsflow-airflow", "topic", settings.topic_raw_pages, "Write") in airflow
    assert ("newsflow-airflow", "topic", dead_letters, "Read") in airflow
    assert not any(g[3] in ("All", "Alter", "Create", "Delete") for g in airflow)
    assert {g[0] for g in grants} == {
        "newsflow-ops",
        "newsflow-airflow",
        *(f"newsflow-{row.name}" for row in topology.STAGES),
    }


def test_only_es_init_uses_the_elastic_superuser(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        if name in ("elasticsearch", "es-init"):
            continue
        env = _environment(service)
        assert not any("ELASTIC_PASSWORD" in f"{k}={v}" for k, v in env.items()), name
        expected = "newsflow-airflow" if name.startswith("airflow-") else ES_USERS.get(name)
        assert env.get("NEWSFLOW_ES_USERNAME") == expected, name  # None: no ES credentials
        if expected is not None:
            assert env["NEWSFLOW_ES_PASSWORD"].startswith("${ES_"), name
    script = ES_INIT_SCRIPT.read_text(encoding="utf-8")
    made = dict(re.findall(r"(?m)^user (\S+) \S+ (\S+)$", script))
    assert set(made) == set(ES_USERS.values())
    for role in made.values():
        assert role != "superuser" and f"role {role} " in script, role
    assert '\\"all\\"' not in script and '\\"superuser\\"' not in script  # in roles' JSON
    after = services["newsflow-init"]["depends_on"]["es-init"]["condition"]
    assert after == "service_completed_successfully"


# --- images -------------------------------------------------------------------------------


def test_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image or service.get("build"), f"{name} has neither image nor build"
        if image:
            _, tag = _image_ref(str(image))
            assert tag != "latest" and _PINNED_TAG.match(tag), f"{name}: {image} is not pinned"


def test_dockerfile_base_images_are_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        build = service.get("build")
        if not build:
            continue
        context = REPO / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert dockerfile.is_file(), f"{name}: {dockerfile} does not exist"
        for line in dockerfile.read_text(encoding="utf-8").splitlines():
            if line.strip().upper().startswith("FROM "):
                image = line.split()[1]
                _, tag = _image_ref(image)
                assert tag != "latest" and _PINNED_TAG.match(tag), f"{dockerfile}: {line}"


def test_kafka_image_is_kafka_4(services: dict[str, dict[str, Any]]) -> None:
    name, tag = _image_ref(services["kafka"]["image"])
    assert name == "apache/kafka"
    assert tag.split(".")[0] == "4"


def test_elasticsearch_image_matches_client_major(services: dict[str, dict[str, Any]]) -> None:
    name, tag = _image_ref(services["elasticsearch"]["image"])
    assert name == "docker.elastic.co/elasticsearch/elasticsearch"  # the full image
    assert tag.split(".")[0] == version("elasticsearch").split(".")[0]


def test_project_image_is_built_at_the_project_version(
    services: dict[str, dict[str, Any]],
) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    for name in ("newsflow-init", "enrich-worker", "index-worker", "airflow-scheduler"):
        build = services[name].get("build")
        assert isinstance(build, dict), name
        assert build["dockerfile"].startswith("deploy/docker/"), name
        assert _image_ref(services[name]["image"]) == ("newsflow", project["version"]), name


# --- dependencies, volumes ----------------------------------------------------------------


def test_depends_on_existing_services_with_conditions(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        depends = service.get("depends_on") or {}
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions (a mapping)"
        for dependency, spec in depends.items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert dependency != name
            condition = spec.get("condition")
            assert condition in ("service_healthy", "service_completed_successfully"), name
            if condition == "service_healthy":
                assert "healthcheck" in services[dependency], f"{dependency} has no healthcheck"
            else:
                assert dependency in ONE_SHOT, f"{dependency} is not a one-shot service"


def test_named_volumes_are_declared(compose: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            # A bind mount: a path, or a variable that names one (``${OUTLETS_FILE:-./x}``).
            if not source.startswith((".", "/", "~", "${")):
                assert source in declared, f"{name}: volume {source} is not declared"
    assert {"kafka-data", "es-data", "postgres-data"} <= declared


def test_the_outlets_registry_is_mounted_where_the_settings_look(
    services: dict[str, dict[str, Any]],
) -> None:
    # The image holds code only: every service built from it reads the registry from a mount.
    for name, service in services.items():
        path = _environment(service).get("NEWSFLOW_OUTLETS_FILE")
        if "build" not in service:
            continue
        assert path, f"{name}: NEWSFLOW_OUTLETS_FILE is not set"
        targets = [str(v).split(":")[-2] for v in service.get("volumes", []) if ":" in str(v)]
        assert path in targets, f"{name}: nothing is mounted at {path}"


# --- NEWSFLOW_* variables -----------------------------------------------------------------


def test_newsflow_variables_are_settings_fields(compose: dict[str, Any]) -> None:
    fields = set(Settings.model_fields)
    prefix = str(Settings.model_config.get("env_prefix", "NEWSFLOW_"))
    used: set[str] = set()
    for service in compose["services"].values():
        used |= {key for key in _environment(service) if key.startswith(prefix)}
        for value in _environment(service).values():  # ${NEWSFLOW_...} interpolations too
            used |= {v for v in _INTERPOLATION.findall(value) if v.startswith(prefix)}
    assert {
        "NEWSFLOW_KAFKA_BOOTSTRAP",
        "NEWSFLOW_ES_URL",
        "NEWSFLOW_ES_USERNAME",
        "NEWSFLOW_ES_PASSWORD",
        "NEWSFLOW_AIRFLOW_URL",
    } <= used
    unknown = sorted(v for v in used if v[len(prefix) :].lower() not in fields)
    assert not unknown, f"not fields of newsflow.settings.Settings: {unknown}"


def test_workers_reach_the_services_by_name(services: dict[str, dict[str, Any]]) -> None:
    for name in ("newsflow-init", "enrich-worker", "index-worker", "airflow-scheduler"):
        env = _environment(services[name])
        assert env["NEWSFLOW_KAFKA_BOOTSTRAP"].split(":")[0] in services
        assert env["NEWSFLOW_ES_URL"].split("//")[1].split(":")[0] in services


# --- `newsflow ...` commands are real CLI commands ----------------------------------------


def _stand_in_cli() -> typer.Typer:
    """The CLI's documented shape, used only while ``pipeline.cli`` cannot be imported."""
    app = typer.Typer()
    worker = typer.Typer()
    stack = typer.Typer()
    app.add_typer(worker, name="worker")
    app.add_typer(stack, name="stack")
    for command in ("init", "search", "extract"):
        app.command(command)(lambda: None)
    for command in ("enrich", "index"):
        worker.command(command)(lambda: None)
    for command in ("up", "down", "status"):
        stack.command(command)(lambda: None)
    return app


def _cli_app() -> typer.Typer:
    try:
        from pipeline.cli import app
    except ModuleNotFoundError as exc:
        # only while a module of this project is not written yet; any other error is a failure
        if (exc.name or "").split(".")[0] not in ("newsflow", "ingest", "enrich", "index"):
            raise
        return _stand_in_cli()
    assert isinstance(app, typer.Typer)
    return app


def resolve_command(app: typer.Typer, argv: list[str]) -> list[str]:
    """The command path ``argv`` names in ``app`` (e.g. ``["worker", "enrich"]``).

    Raises ``LookupError`` when a word is not a command or group of the app.
    """
    command: Any = typer.main.get_command(app)
    path: list[str] = []
    for word in argv:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:  # a leaf command: the rest are its arguments and options
            break
        if word not in subcommands:
            known = ", ".join(sorted(subcommands))
            raise LookupError(f"no command {' '.join([*path, word])!r} (known: {known})")
        command = subcommands[word]
        path.append(word)
    if getattr(command, "commands", None) is not None:
        raise LookupError(f"{' '.join(path) or 'newsflow'!r} is a group, not a command")
    return path


def test_resolve_command_on_the_cli_shape() -> None:
    app = _stand_in_cli()
    assert resolve_command(app, ["worker", "enrich"]) == ["worker", "enrich"]
    assert resolve_command(app, ["extract", "page.html"]) == ["extract"]
    with pytest.raises(LookupError):
        resolve_command(app, ["worker", "fetch"])
    with pytest.raises(LookupError):
        resolve_command(app, ["worker"])


def _newsflow_invocations(services: dict[str, dict[str, Any]]) -> list[tuple[str, list[str]]]:
    found = []
    for name, service in services.items():
        argv = _command(service)
        if argv[:1] == ["newsflow"]:
            found.append((name, argv[1:]))
        elif argv[:1] in (["bash"], ["sh"]) and argv:  # `newsflow ...` lines in a script
            for match in _SCRIPT_NEWSFLOW.finditer(argv[-1]):
                found.append((name, shlex.split(match.group(1))))
    return found


def test_newsflow_commands_exist_in_the_cli(services: dict[str, dict[str, Any]]) -> None:
    app = _cli_app()
    invocations = _newsflow_invocations(services)
    assert {tuple(argv) for _, argv in invocations} >= {
        ("init",),
        ("worker", "enrich"),
        ("worker", "index"),
    }
    for service, argv in invocations:
        try:
            resolve_command(app, argv)
        except LookupError as exc:
            pytest.fail(f"{service}: `newsflow {' '.join(argv)}`: {exc}")


# --- docker-compose.cluster.yml: the cluster override --------------------------------------

CLUSTER_FILE = REPO / "docker-compose.cluster.yml"
KAFKA_NODES = ("kafka", "kafka-2", "kafka-3")
ES_NODES = ("elasticsearch", "elasticsearch-2", "elasticsearch-3")


def _merge_service(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Compose's merge for what these tests read: environment and depends_on merge key by
    key, volumes by mount target, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if key == "environment":
            merged[key] = {**_environment(base), **_environment(override)}
        elif key == "depends_on" and isinstance(base.get(key), dict):
            merged[key] = {**base[key], **value}
        elif key == "volumes":
            by_target = {str(v).split(":")[1]: v for v in [*base.get(key, []), *value]}
            merged[key] = list(by_target.values())
        else:
            merged[key] = value
    return merged


@pytest.fixture(scope="module")
def cluster_override() -> dict[str, Any]:
    data = yaml.safe_load(CLUSTER_FILE.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def cluster(compose: dict[str, Any], cluster_override: dict[str, Any]) -> dict[str, Any]:
    """docker-compose.yml with the override applied: what `docker compose -f ... -f ...` runs."""
    services = {name: dict(service) for name, service in compose["services"].items()}
    for name, service in cluster_override["services"].items():
        services[name] = _merge_service(services.get(name, {}), service)
    volumes = {**(compose.get("volumes") or {}), **(cluster_override.get("volumes") or {})}
    return {"services": services, "volumes": volumes}


def test_the_override_documents_how_to_use_it() -> None:
    header = CLUSTER_FILE.read_text(encoding="utf-8").split("\nx-", 1)[0]
    assert "docker compose -f docker-compose.yml -f docker-compose.cluster.yml up" in header
    for word in ("min.insync.replicas=2", "replication factor 3", "one replica"):
        assert word in header, word


def test_the_override_adds_nodes_and_changes_known_services(
    services: dict[str, dict[str, Any]], cluster_override: dict[str, Any]
) -> None:
    added = set(cluster_override["services"]) - set(services)
    assert added == {"kafka-2", "kafka-3", "elasticsearch-2", "elasticsearch-3", "es-certs"}
    for name in added - {"es-certs"}:
        base = name.rsplit("-", 1)[0]
        assert cluster_override["services"][name]["image"] == services[base]["image"]


def test_three_kafka_nodes_form_one_quorum(cluster: dict[str, Any]) -> None:
    envs = [_environment(cluster["services"][name]) for name in KAFKA_NODES]
    assert [env["KAFKA_NODE_ID"] for env in envs] == ["1", "2", "3"]
    assert len({env["CLUSTER_ID"] for env in envs}) == 1
    voters = "1@kafka:9093,2@kafka-2:9093,3@kafka-3:9093"
    for name, env in zip(KAFKA_NODES, envs, strict=True):
        assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == voters
        assert env["KAFKA_PROCESS_ROLES"] == "broker,controller"
        assert f"INTERNAL://{name}:9092" in env["KAFKA_ADVERTISED_LISTENERS"]
        _kafka_security_checks(env)
        assert "command-config" in " ".join(cluster["services"][name]["healthcheck"]["test"])
        for key in (
            "KAFKA_DEFAULT_REPLICATION_FACTOR",
            "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR",
            "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_REPLICATION_FACTOR",
        ):
            assert env[key] == "3", (name, key)
        for key in (
            "KAFKA_MIN_INSYNC_REPLICAS",
            "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR",
            "KAFKA_SHARE_COORDINATOR_STATE_TOPIC_MIN_ISR",
        ):
            assert env[key] == "2", (name, key)
    published = [p for name in KAFKA_NODES for p in cluster["services"][name].get("ports", [])]
    assert len(published) == len(set(published)) == 3


def test_three_elasticsearch_nodes_form_one_cluster(cluster: dict[str, Any]) -> None:
    envs = [_environment(cluster["services"][name]) for name in ES_NODES]
    names = [env["node.name"] for env in envs]
    assert len(set(names)) == 3
    for name, env in zip(ES_NODES, envs, strict=True):
        assert env["cluster.name"] == "newsflow"
        assert env["discovery.type"] != "single-node"
        assert env["discovery.seed_hosts"].split(",") == list(ES_NODES)
        assert env["cluster.initial_master_nodes"].split(",") == names
        # Security on with several nodes needs TLS between them, with each node's own cert.
        assert env["xpack.security.enabled"] == "true"
        assert env["xpack.security.transport.ssl.enabled"] == "true"
        assert env["xpack.security.transport.ssl.certificate"] == f"certs/{name}/{name}.crt"
        assert "ELASTIC_PASSWORD" in env
        deps = cluster["services"][name]["depends_on"]
        assert deps["es-certs"]["condition"] == "service_completed_successfully"
    certs = cluster["services"]["es-certs"]
    assert certs["restart"] == "no"
    for name in ES_NODES:
        assert f"name: {name}," in " ".join(_command(certs))


def test_newsflow_services_use_every_node_and_replicate(
    services: dict[str, dict[str, Any]], cluster: dict[str, Any]
) -> None:
    users = [n for n, s in services.items() if "NEWSFLOW_KAFKA_BOOTSTRAP" in _environment(s)]
    assert {"newsflow-init", "enrich-worker", "index-worker", "airflow-scheduler"} <= set(users)
    for name in users:
        env = _environment(cluster["services"][name])
        brokers = [address.split(":")[0] for address in env["NEWSFLOW_KAFKA_BOOTSTRAP"].split(",")]
        hosts = [url.split("//")[1].split(":")[0] for url in env["NEWSFLOW_ES_URL"].split(",")]
        assert (tuple(brokers), tuple(hosts)) == (KAFKA_NODES, ES_NODES), name
        assert env["NEWSFLOW_TOPIC_REPLICATION"] == "3", name
        assert env["NEWSFLOW_TOPIC_MIN_INSYNC_REPLICAS"] == "2", name
        assert env["NEWSFLOW_ES_REPLICAS"] == "1", name


def test_the_cluster_waits_for_every_node_and_declares_its_volumes(
    cluster: dict[str, Any],
) -> None:
    services = cluster["services"]
    deps = services["newsflow-init"]["depends_on"]
    for node in (*KAFKA_NODES, *ES_NODES):
        assert deps[node]["condition"] == "service_healthy", node
        assert "healthcheck" in services[node], node
    test_named_volumes_are_declared(cluster)
    test_newsflow_variables_are_settings_fields(cluster)
