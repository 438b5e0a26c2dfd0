"""Packaging: the systemd unit and the Dockerfile say what the daemon and its CLI understand."""

from __future__ import annotations

import asyncio
import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from watcher.cli import build_parser
from watcher.metrics import Metrics
from watcher.server import Server
from watcher.settings import load_settings

from .conftest import ROOT

UNIT = ROOT / "systemd" / "watcher.service"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
EXAMPLE = ROOT / "config.example.toml"

# Each of these, where the unit sets it, must carry a comment saying what it protects.
HARDENING = (
    "DynamicUser",
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "DevicePolicy",
    "PrivateUsers",
    "PrivateMounts",
    "NoNewPrivileges",
    "CapabilityBoundingSet",
    "RestrictSUIDSGID",
    "RestrictAddressFamilies",
    "MemoryDenyWriteExecute",
    "RestrictNamespaces",
    "RestrictRealtime",
    "LockPersonality",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "ProtectProc",
    "ProcSubset",
    "SystemCallArchitectures",
    "SystemCallFilter",
    "SystemCallErrorNumber",
    "UMask",
)
REQUIRED_HARDENING = {
    "ProtectSystem": "strict",
    "NoNewPrivileges": "yes",
    "PrivateTmp": "yes",
    "ProtectHome": "yes",
    "MemoryDenyWriteExecute": "yes",
}


# --- the systemd unit -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Directive:
    """One ``Key=value`` line of a unit file, and whether a comment stands just above it."""

    section: str
    key: str
    value: str
    commented: bool


def read_unit(path: Path) -> list[Directive]:
    """The directives of a unit file, in order (keys may repeat, as systemd allows)."""
    directives: list[Directive] = []
    section, above = "", ""
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            same_group = bool(directives) and directives[-1].key == key and above == "directive"
            commented = above == "comment" or (same_group and directives[-1].commented)
            directives.append(Directive(section, key, value, commented))
            above = "directive"
            continue
        above = "comment" if line.startswith(("#", ";")) else ""
    return directives


def service(key: str) -> list[str]:
    """Every value the unit's [Service] section gives ``key``."""
    return [d.value for d in read_unit(UNIT) if d.section == "Service" and d.key == key]


def unit_environment() -> dict[str, str]:
    """The unit's Environment= assignments."""
    return dict(pair.split("=", 1) for v in service("Environment") for pair in shlex.split(v))


def test_unit_is_notify_with_watchdog_and_restart() -> None:
    """Type=notify with a watchdog, reload by SIGHUP to the main process, restart on failure."""
    actual = (
        service("Type"),
        service("NotifyAccess"),
        len(service("WatchdogSec")),
        service("ExecReload"),
        service("Restart"),
    )
    expected = (["notify"], ["main"], 1, ["/bin/kill -HUP $MAINPID"], ["on-failure"])
    assert expected == actual


def test_unit_runs_as_its_own_user_with_state_and_config_dirs() -> None:
    """DynamicUser, StateDirectory and ConfigurationDirectory are all 'watcher'."""
    expected = (["yes"], ["watcher"], ["watcher"])
    actual = (service("DynamicUser"), service("StateDirectory"), service("ConfigurationDirectory"))
    assert expected == actual


def test_unit_exec_start_parses_with_our_cli() -> None:
    """ExecStart is `watcher --config /etc/watcher/config.toml run`, the config in /etc/watcher."""
    (line,) = service("ExecStart")
    argv = shlex.split(line)
    args = build_parser().parse_args(argv[1:])
    config_dir = Path("/etc") / service("ConfigurationDirectory")[0]
    expected = ("watcher", "run", "/etc/watcher/config.toml", config_dir)
    assert expected == (Path(argv[0]).name, args.command, args.config, Path(args.config).parent)


def test_unit_data_dir_is_the_state_directory() -> None:
    """WATCHER_WATCHER__DATA_DIR in the unit puts the store in StateDirectory."""
    settings = load_settings(None, unit_environment())
    expected = Path("/var/lib") / service("StateDirectory")[0]
    assert (expected, expected / "watcher.db") == (settings.data_path, settings.store_path)


def test_unit_hardening_lines_are_set_and_commented() -> None:
    """The required hardening lines are set, and every hardening line has a comment above it."""
    directives = [d for d in read_unit(UNIT) if d.section == "Service"]
    actual = {d.key: d.value for d in directives if d.key in REQUIRED_HARDENING}
    uncommented = [d.key for d in directives if d.key in HARDENING and not d.commented]
    assert (REQUIRED_HARDENING, []) == (actual, uncommented)


def test_unit_allows_the_sockets_the_daemon_uses() -> None:
    """IP sockets for feeds and the server, AF_UNIX for sd_notify: no more, no less."""
    (families,) = service("RestrictAddressFamilies")
    assert {"AF_INET", "AF_INET6", "AF_UNIX"} == set(families.split())


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit (ExecStart pointed at this checkout's watcher)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not found: `apt-get install systemd` to check the unit")
    script = Path(sys.executable).parent / "watcher"
    if not script.is_file():
        pytest.skip(f"no watcher script beside {sys.executable}: install the project (pip -e .)")
    text = UNIT.read_text(encoding="utf-8")
    copy = tmp_path / "watcher.service"
    copy.write_text(text.replace("ExecStart=/usr/local/bin/watcher ", f"ExecStart={script} "))
    done = subprocess.run(
        [tool, "verify", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    assert (0, "") == (done.returncode, done.stderr.strip())


# --- the Dockerfile -------------------------------------------------------------------------------


def dockerfile() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    steps = []
    for line in joined.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            instruction, _, rest = line.strip().partition(" ")
            steps.append((instruction.upper(), rest.strip()))
    return steps


def final_stage() -> list[tuple[str, str]]:
    """The instructions of the last stage (after the last FROM)."""
    steps = dockerfile()
    last_from = max(i for i, (ins, _) in enumerate(steps) if ins == "FROM")
    return steps[last_from:]


def instruction(name: str, steps: list[tuple[str, str]] | None = None) -> list[str]:
    """The arguments of every ``name`` instruction."""
    return [rest for ins, rest in (steps or dockerfile()) if ins == name]


def docker_env() -> dict[str, str]:
    """The ENV of the final stage, as a mapping."""
    env: dict[str, str] = {}
    for rest in instruction("ENV", final_stage()):
        env.update(pair.split("=", 1) for pair in shlex.split(rest))
    return env


def docker_argv() -> list[str]:
    """ENTRYPOINT + CMD, both in exec (JSON) form."""
    (entrypoint,) = instruction("ENTRYPOINT")
    (cmd,) = instruction("CMD", [s for s in final_stage() if s[0] == "CMD"])
    return [*json.loads(entrypoint), *json.loads(cmd)]


def health_command() -> list[str]:
    """The HEALTHCHECK's command, in exec form."""
    (check,) = instruction("HEALTHCHECK")
    return list(json.loads(check.partition(" CMD ")[2]))


def test_docker_multi_stage_on_one_slim_python_base() -> None:
    """A builder stage and a final stage, both on the same slim Python base."""
    froms = instruction("FROM")
    (base_arg,) = instruction("ARG")
    name, _, image = base_arg.partition("=")
    expected = ([f"${{{name}}} AS builder", f"${{{name}}}"], True)
    assert expected == (froms, image.startswith("python:3.11") and "-slim" in image)


def test_docker_final_stage_has_no_build_tools_and_a_user() -> None:
    """The final stage installs nothing (no apt, no pip), copies the venv and runs as a user."""
    final = final_stage()
    runs = " ".join(instruction("RUN", final))
    users = instruction("USER", final)
    copied = [rest for ins, rest in final if ins == "COPY" and rest.startswith("--from=builder")]
    actual = (bool(re.search(r"apt|pip|gcc|build-essential", runs)), users, copied)
    expected = (False, ["watcher"], ["--from=builder /opt/watcher /opt/watcher"])
    assert expected == actual


def test_docker_paths_and_environment() -> None:
    """/data is volume and data dir; the server listens on all interfaces at the EXPOSEd port."""
    env = docker_env()
    settings = load_settings(EXAMPLE, env)  # the config the image ships
    actual = (
        instruction("VOLUME"),
        settings.data_path,
        settings.server.address,
        instruction("EXPOSE"),
        instruction("STOPSIGNAL"),
        "/opt/watcher/bin" in env["PATH"].split(":"),
    )
    expected = (['["/data"]'], Path("/data"), ("0.0.0.0", 8787), ["8787"], ["SIGTERM"], True)
    assert expected == actual


def test_docker_entrypoint_parses_with_our_cli() -> None:
    """ENTRYPOINT + CMD is `watcher --config /etc/watcher/config.toml run`."""
    argv = docker_argv()
    args = build_parser().parse_args(argv[1:])
    copied = [rest.split()[-1] for ins, rest in final_stage() if ins == "COPY"]
    expected = ("watcher", "run", "/etc/watcher/config.toml", True)
    assert expected == (argv[0], args.command, args.config, args.config in copied)


def test_docker_copies_only_what_dockerignore_lets_in() -> None:
    """Each COPY source exists and is let in by .dockerignore (which shuts out the rest)."""
    sources = [
        src
        for ins, rest in dockerfile()
        if ins == "COPY" and "--from" not in rest
        for src in rest.split()[:-1]
    ]
    allowed = {
        line[1:].rstrip("/")
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.startswith("!")
    }
    missing = [s for s in sources if not (ROOT / s).exists()]
    shut_out = [s for s in sources if s.rstrip("/") not in allowed]
    assert ("*", [], []) == (DOCKERIGNORE.read_text().splitlines()[1], missing, shut_out)


def test_docker_health_url_is_the_server_and_port() -> None:
    """The health check asks 127.0.0.1 at the listen port for /healthz."""
    argv = health_command()
    url = urlsplit(re.findall(r"'(http://[^']+)'", argv[2])[0])
    _, port = load_settings(None, docker_env()).server.address or ("", 0)
    expected = (["python", "-c"], "127.0.0.1", port, "/healthz")
    assert expected == (argv[:2], url.hostname, url.port, url.path)


def _run_health_check(checks: Mapping[str, bool]) -> int:
    """Exit code of the Dockerfile's health command against a real server with ``checks``."""
    code = health_command()[2]

    async def go() -> int:
        async with Server(
            "127.0.0.1:0", health=lambda: checks, metrics=Metrics(), stories=lambda a, b: []
        ) as server:
            local = code.replace(":8787/", f":{server.address[1]}/")
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-c",
                local,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            return await asyncio.wait_for(proc.wait(), 30)

    return asyncio.run(go())


def test_docker_health_command_passes_on_a_healthy_server() -> None:
    """The HEALTHCHECK command exits 0 when /healthz answers 200."""
    assert 0 == _run_health_check({"scheduler": True, "store": True})


def test_docker_health_command_fails_on_an_unhealthy_server() -> None:
    """The HEALTHCHECK command exits 1 when /healthz answers 503."""
    assert 1 == _run_health_check({"scheduler": True, "store": False})
