"""The README stays short and true: at most 8 KB, every Python snippet runs as written, every
command names a tool, config and make target that exist, and the install ranges of setup.py admit
the versions requirements.txt pins (the MMDetection extra: its "#route:" pins)."""

import ast
import os
import re
import shlex
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README = os.path.join(ROOT, "README.md")


def _blocks(lang: str) -> list[str]:
    with open(README) as f:
        text = f.read()
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.M | re.S)


def test_readme_is_at_most_8_kb():
    assert os.path.getsize(README) <= 8 * 1024


def test_readme_has_snippets_for_each_method():
    snippets = "\n".join(_blocks("python"))
    for needle in ("enable_featsr", "TaskDrivenSR", "build_sr_network"):
        assert needle in snippets


@pytest.mark.parametrize("index", range(len(_blocks("python"))))
def test_readme_python_snippet_runs(index):
    code = _blocks("python")[index]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, f"README snippet {index} failed:\n{code}\n{proc.stderr[-3000:]}"


def _commands() -> list[list[str]]:
    commands = []
    for block in _blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("#", 1)[0].strip()
            if line:
                commands.append(shlex.split(line))
    return commands


def test_readme_commands_name_existing_tools_configs_and_targets():
    with open(os.path.join(ROOT, "Makefile")) as f:
        targets = set(re.findall(r"^([a-z][a-z-]*):", f.read(), flags=re.M))
    commands = _commands()
    assert commands
    for argv in commands:
        if argv[0] == "make":
            assert set(argv[1:]) <= targets, argv
        for token in argv:
            if token.endswith((".py", ".yaml")) and not token.startswith("model"):
                assert os.path.isfile(os.path.join(ROOT, token)), f"{token} in {argv}"


def _setup_keyword(name: str):
    with open(os.path.join(ROOT, "setup.py")) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == name:
            return ast.literal_eval(node.value)
    raise AssertionError(f"setup.py has no {name}")


def _install_requires() -> list[str]:
    return _setup_keyword("install_requires")


def test_install_requires_admit_the_pinned_versions():
    pins = {}
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith("#"):
                name, version = line.split("==")
                pins[name.lower()] = version
    requires = _install_requires()
    assert requires
    for spec in requires:
        req = Requirement(spec)
        assert req.specifier, f"{spec}: state the supported versions"
        assert req.name.lower() in pins, f"{spec} is not pinned in requirements.txt"
        assert req.specifier.contains(pins[req.name.lower()]), (spec, pins[req.name.lower()])


def test_mmdet_extra_admits_the_pinned_versions():
    pins = {}
    with open(os.path.join(ROOT, "requirements.txt")) as f:
        for line in f:
            match = re.match(r"#route:(?:mmdet|mmcv-sdist):\s*(\S+)==(\S+)", line)
            if match:
                pins[match.group(1).lower()] = match.group(2)
    requires = _setup_keyword("extras_require")["mmdet"]
    assert {Requirement(spec).name for spec in requires} == {"mmcv", "mmdet", "mmengine"}
    for spec in requires:
        req = Requirement(spec)
        assert req.specifier, f"{spec}: state the supported versions"
        assert req.name in pins, f"{spec} is not pinned by a #route: line of requirements.txt"
        assert req.specifier.contains(pins[req.name]), (spec, pins[req.name])
