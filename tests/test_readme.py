"""Every command and snippet of README.md runs as written, from the repo root after `make demo`.

The README's fenced blocks say what they hold: ```sh (commands, run here one by one; each must exit 0,
or the status its comment gives as "# exit 1: why"), ```python
(snippets, run in order in one interpreter, as in a notebook), ```toml (featurestore.toml, loaded)
or ```text (output, a listing: not run). It all happens in a temporary copy of definitions/ whose
data the Makefile's own `demo` recipe generates (definitions/generate_data.py), so this passes on a
fresh clone. Any Redis URL is replaced by our own private redis-server; `fs serve` is started on a
free port (the commands after it in its block, such as the curl example, query it there) and
stopped at the end of its block; `fs init` writes into the temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.redis_server import free_port

pytestmark = [pytest.mark.redis, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)
LANGUAGES = {"sh", "python", "toml", "text"}
BIN = Path(sys.executable).parent
FS = [str(BIN / "fs")] if (BIN / "fs").exists() else [sys.executable, "-m", "featurestore.cli"]
TIMEOUT = 120


@dataclass(frozen=True)
class Block:
    language: str
    body: str
    line: int  # of the block's first line inside the fence


def blocks(text: str) -> list[Block]:
    return [
        Block(m.group(1).strip(), m.group(2), text.count("\n", 0, m.start()) + 2)
        for m in FENCE.finditer(text)
    ]


def commands(block: Block) -> list[tuple[int, str]]:
    """The block's shell commands with their README line: a command goes on while a quote is open
    or a line ends with a backslash; comments and blank lines are dropped."""
    out: list[tuple[int, str]] = []
    pending, first = "", 0
    for i, line in enumerate(block.body.splitlines()):
        if not pending:
            first = block.line + i
        pending = f"{pending}\n{line}" if pending else line
        if pending.endswith("\\"):
            continue
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the command goes on on the next line
            continue
        if words:
            out.append((first, pending))
        pending = ""
    assert not pending, f"README.md line {first}: unterminated command {pending!r}"
    return out


def environment() -> dict[str, str]:
    """The caller's environment without FS_* settings (they would point the demo elsewhere)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FS_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return env


def run(
    argv: list[str], cwd: Path, env: dict[str, str], where: str, expect: int = 0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert proc.returncode == expect, (
        f"{where}: `{shlex.join(argv)}` exited {proc.returncode}, not {expect}\n"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}"
    )
    return proc


# -- the workspace: definitions/ copied, and the Makefile's demo recipe run in it --------------------


def demo_recipe() -> list[str]:
    """The commands of the Makefile's `demo` target (after its install prerequisite)."""
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^demo:.*\n((?:\t.*\n?)+)", makefile, re.M)
    assert match, "Makefile: no demo target"
    return [line.strip() for line in match.group(1).splitlines() if line.strip()]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("readme")
    shutil.copytree(
        ROOT / "definitions", root / "definitions", ignore=shutil.ignore_patterns("data", "__pycache__")
    )
    env = environment()
    for line in demo_recipe():
        argv = [sys.executable if w == "$(PY)" else w for w in shlex.split(line.replace("$(FS)", "fs"))]
        if argv[0] == "fs":
            argv = FS + argv[1:]
        run(argv, root, env, f"Makefile demo: {line}")
    return root


# -- running shell blocks --------------------------------------------------------------------------


class Shell:
    """Runs one README block's commands in the workspace; `fs serve` runs until the block ends."""

    def __init__(self, root: Path, redis_url: str):
        self.root = root
        self.redis_url = redis_url
        self.ports: dict[str, int] = {}  # the README's port -> the free port we serve on instead
        self.servers: list[tuple[subprocess.Popen[bytes], Path]] = []

    def block(self, block: Block) -> None:
        try:
            for line, command in commands(block):
                self.command(line, command)
        finally:
            self.stop_servers()

    def command(self, line: int, command: str) -> None:
        where = f"README.md line {line}"
        command = re.sub(r"redis://[^\s'\"]+", self.redis_url, command)
        words = shlex.split(command, comments=True)
        env = environment()
        while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
            key, _, value = words.pop(0).partition("=")
            env[key] = value
        program, args = words[0], words[1:]
        # "# exit 1: why" after a command: the README says it exits 1 there (a breach it shows)
        expected = re.search(r"#\s*exit (\d+):", command)
        expect = int(expected.group(1)) if expected else 0
        if program == "make":
            assert args in (["demo"], ["test"]), f"{where}: no way to run `{command}` here"
            return  # demo: the workspace fixture ran its recipe; test: this is that run
        if program == "fs":
            if "serve" in args:
                self.serve(where, args, env)
            else:
                run(FS + args, self.root, env, where, expect)
            return
        if program == "curl":
            self.curl(where, args)
            return
        raise AssertionError(
            f"{where}: this test has no way to run `{program}`: teach it (tests/test_readme.py)"
        )

    def serve(self, where: str, args: list[str], env: dict[str, str]) -> None:
        port = free_port()
        if "--port" in args:
            i = args.index("--port")
            self.ports[args[i + 1]] = port
            args = [*args[: i + 1], str(port), *args[i + 2 :]]
        else:
            self.ports["6566"] = port
            args = [*args, "--port", str(port)]
        log = self.root / f"serve-{port}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                FS + args,
                cwd=self.root,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.servers.append((proc, log))
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, f"{where}: `fs {shlex.join(args)}` exited:\n{log.read_text()[-3000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                    assert answer.status == 200
                    return
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, (
                    f"{where}: fs serve never answered:\n{log.read_text()[-3000:]}"
                )
                time.sleep(0.1)

    def stop_servers(self) -> None:
        for proc, _ in self.servers:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)  # its own session: the server and its workers
                try:
                    proc.wait(15)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
        self.servers.clear()

    def local(self, url: str) -> str:
        """`url` aimed at the server we started in place of the README's port."""
        match = re.match(r"(?:https?://)?(?:localhost|127\.0\.0\.1):(\d+)(.*)", url)
        assert match and match.group(1) in self.ports, f"{url} is not a server this block started"
        return f"http://127.0.0.1:{self.ports[match.group(1)]}{match.group(2)}"

    def curl(self, where: str, args: list[str]) -> None:
        urls = [a for a in args if re.match(r"(?:https?://)?(?:localhost|127\.0\.0\.1):\d+", a)]
        assert len(urls) == 1, f"{where}: curl with no local URL: {args}"
        args = [self.local(a) if a in urls else a for a in args]
        if shutil.which("curl"):
            body = run(["curl", "--fail-with-body", *args], self.root, environment(), where).stdout
        else:  # the same request, made here: curl -d sends a POST with the data as its body
            data = next((args[i + 1] for i, a in enumerate(args) if a in ("-d", "--data")), None)
            request = urllib.request.Request(self.local(urls[0]), data=data.encode() if data else None)
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    body = answer.read().decode()
            except urllib.error.HTTPError as e:
                raise AssertionError(f"{where}: {e.code} {e.read().decode()}") from None
        json.loads(body)  # the server answered JSON


def run_shell_blocks(text: str, root: Path, redis_url: str) -> int:
    shell = Shell(root, redis_url)
    ran = 0
    for block in blocks(text):
        if block.language == "sh":
            shell.block(block)
            ran += len(commands(block))
    return ran


# -- the tests -------------------------------------------------------------------------------------


def test_every_readme_block_says_what_it_holds():
    untagged = [b.line - 1 for b in blocks(README.read_text()) if b.language not in LANGUAGES]
    assert not untagged, (
        f"README.md: code blocks at lines {untagged} need a language, one of {sorted(LANGUAGES)}"
    )


def test_readme_commands_run_as_written(workspace, redis_url):
    ran = run_shell_blocks(README.read_text(), workspace, redis_url)
    assert ran >= 15
    assert (workspace / "my_repo" / "featurestore.toml").exists()  # fs init wrote into the workspace
    assert (workspace / "train.parquet").exists()


def test_readme_python_snippets_run_in_order(workspace):
    snippets = [(b.line, b.body) for b in blocks(README.read_text()) if b.language == "python"]
    assert len(snippets) >= 4
    runner = textwrap.dedent(
        """
        import ast, asyncio, inspect, json, sys, traceback
        namespace = {"__name__": "__readme__"}
        loop = asyncio.new_event_loop()
        for line, source in json.loads(sys.stdin.read()):
            try:
                code = compile(source, f"README.md:{line}", "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
                result = eval(code, namespace)
                if inspect.iscoroutine(result):
                    loop.run_until_complete(result)
            except BaseException:
                sys.exit(f"README.md line {line}: the python snippet failed\\n{traceback.format_exc()}")
        """
    )
    proc = subprocess.run(
        [sys.executable, "-c", runner],
        input=json.dumps(snippets),
        cwd=workspace,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode == 0, proc.stderr[-5000:]


def test_readme_configuration_loads(tmp_path):
    from featurestore.config import load_config

    team, configuration = [b.body for b in blocks(README.read_text()) if b.language == "toml"]
    (tmp_path / "featurestore.toml").write_text(configuration)
    config = load_config(tmp_path, env={})
    assert config.project == "rides"
    # The team-scale block is a fragment of the same file: it loads on top of the project line.
    (tmp_path / "featurestore.toml").write_text('project = "rides"\n' + team)
    config = load_config(tmp_path, env={})
    assert config.registry_url is not None and config.online.cluster and config.offline.engine == "spark"


def test_a_broken_readme_command_fails_this_test(workspace, redis_url):
    broken = (
        "```sh\n"
        "fs --repo definitions list views\n"
        "fs --repo definitions training-set --entities trips.parquet --features driver_activity --out t.parquet\n"
        "```\n"
    )
    with pytest.raises(AssertionError, match=r"README.md line 3: .*training-set.*\n(.|\n)*trips.parquet"):
        run_shell_blocks(broken, workspace, redis_url)
    with pytest.raises(AssertionError, match="no way to run `rm`"):
        run_shell_blocks("```sh\nrm -rf definitions\n```\n", workspace, redis_url)
