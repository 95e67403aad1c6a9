"""Every language of sandbox/languages.py, for real: the table itself, the sandbox's run() per
language and backend, and the `code` verifier per language (right, wrong, compile error, time limit,
memory limit, fence aliases).

A language whose toolchain is missing on this host is skipped with the package that provides it
(bash deploy/install-system-deps.sh installs them all). The docker backend is skipped, with the reason,
when no engine answers or the sandbox image is missing (deploy/start-dockerd.sh,
deploy/sandbox/build-image.sh).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import sandbox
import verifiers
from language_programs import ADD, COMPILED, PROGRAMS, toolchain_missing
from sandbox.languages import LANGUAGES, _java_main, by_fence, get, markdown_table, packages
from sandbox.types import Limits, RunStatus, SandboxUnavailable

REPO = Path(__file__).resolve().parent.parent
ALL = list(LANGUAGES)
RUN = Limits(wall_time_s=10, cpu_time_s=10, memory_mb=512, max_processes=32)
SPIN = Limits(wall_time_s=2, cpu_time_s=1, memory_mb=512, max_processes=32)
HOARD = Limits(wall_time_s=10, cpu_time_s=10, memory_mb=256, max_processes=32)
ADD_STDIN = "".join(ADD["inputs"]).encode()
ADD_STDOUT = "".join(ADD["outputs"]).encode()


def _needs(language: str) -> None:
    reason = toolchain_missing(language)
    if reason:
        pytest.skip(reason)


_backend_problems: dict[str, str | None] = {}


def _backend(name: str):
    """The process-wide backend ``name``, or a skip saying why it can't run here."""
    if name not in _backend_problems:
        try:
            sandbox.get_sandbox(name).check()
            _backend_problems[name] = None
        except SandboxUnavailable as e:
            _backend_problems[name] = str(e)
    if _backend_problems[name]:
        pytest.skip(f"{name} sandbox unavailable: {_backend_problems[name]}")
    return sandbox.get_sandbox(name)


BACKENDS = ["process", "docker"]


# ---------------------------------------------------------------- the table

def test_every_row_answers_to_its_own_name_and_aliases():
    for lang in LANGUAGES.values():
        assert lang.name in lang.aliases
        for alias in lang.aliases:
            assert by_fence(alias) is lang
            assert by_fence(f" {alias.upper()} ") is lang


def test_no_alias_names_two_languages():
    aliases = [a for lang in LANGUAGES.values() for a in lang.aliases]
    assert len(aliases) == len(set(aliases))


def test_the_issue_languages_and_fences_are_all_in_the_table():
    wanted = {"python": "python", "py": "python", "python3": "python", "cpp": "cpp", "c++": "cpp", "cc": "cpp",
              "c": "c", "java": "java", "javascript": "javascript", "js": "javascript", "node": "javascript",
              "go": "go", "golang": "go", "rust": "rust", "rs": "rust"}
    assert {fence: by_fence(fence).name for fence in wanted} == wanted
    assert by_fence("brainfuck") is None
    assert get("cpp") is LANGUAGES["cpp"] and get("c++") is None


def test_cgroup_rows_bound_their_heap_with_the_runtime_flag():
    # Without RLIMIT_AS the runtime's own limit is what keeps the heap inside the cgroup.
    for lang in LANGUAGES.values():
        if lang.memory == "cgroup":
            argv, env = lang.run_argv(PROGRAMS[lang.name]["add"], 300), lang.environment(300)
            assert any("300" in a for a in argv) or any("300" in v for v in env.values()), lang.name
            assert lang.as_headroom_mb > 0, f"{lang.name}: no address-space bound at all without cgroups"


def test_rows_give_toolchains_a_writable_home_only_under_tmp():
    for lang in LANGUAGES.values():
        env = lang.environment(256)
        for key in ("HOME", "TMPDIR", "GOCACHE", "GOPATH"):
            if key in env:
                assert env[key].startswith("/tmp"), (lang.name, key)


def test_go_builds_offline_with_the_standard_library_only():
    env = LANGUAGES["go"].environment(256)
    assert env["GOPROXY"] == "off" and env["GO111MODULE"] == "off" and env["CGO_ENABLED"] == "0"


def test_packages_lists_each_debian_package_once_in_row_order():
    pk = packages()
    assert len(pk) == len(set(pk))
    for lang in LANGUAGES.values():
        assert set(lang.packages) <= set(pk)
    assert packages(["c", "cpp"]) == ["gcc", "libc6-dev", "g++"]


def test_install_script_and_images_read_packages_from_the_table():
    # deploy/install-system-deps.sh and deploy/lib.sh (base image) run this before any venv exists.
    out = subprocess.run([sys.executable, "-S", str(REPO / "sandbox/languages.py"), "packages"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == packages()
    for script in ("deploy/install-system-deps.sh", "deploy/lib.sh"):
        assert "sandbox/languages.py\" packages" in (REPO / script).read_text(), script


def test_requires_lists_every_rows_executables():
    out = subprocess.run([sys.executable, "-S", str(REPO / "sandbox/languages.py"), "requires"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert set(out) == {exe for lang in LANGUAGES.values() for exe in lang.requires}


def test_docs_show_the_table_as_it_is():
    docs = (REPO / "docs/tasks.md").read_text()
    start = docs.index("<!-- languages table: generated by `python3 sandbox/languages.py table` -->\n")
    end = docs.index("<!-- end of languages table -->")
    assert docs[start:end].split("\n", 1)[1] == markdown_table(), "regenerate: python3 sandbox/languages.py table"


@pytest.mark.parametrize("image_env, default", [
    ("REWARD_SERVICE_SANDBOX_IMAGE", "reward-service-sandbox:latest"),  # the docker backend's image
    ("SERVICE_IMAGE", "reward-service:latest"),  # the compose API/worker image (process sandbox inside)
])
def test_images_carry_every_toolchain_of_the_table(image_env, default):
    image = os.environ.get(image_env, default)
    if not shutil.which("docker") or subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        pytest.skip("no Docker engine answers (deploy/start-dockerd.sh)")
    if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
        pytest.skip(f"image {image} missing (deploy/sandbox/build-image.sh, deploy/build-images.sh)")
    exes = sorted({exe for lang in LANGUAGES.values() for exe in lang.requires})
    probe = 'for e in "$@"; do command -v "$e" >/dev/null || echo "missing $e"; done'
    binds = sorted({b for lang in LANGUAGES.values() for b in lang.ro_binds})
    probe += "".join(f'; [ -e {b} ] || echo "missing {b}"' for b in binds)
    out = subprocess.run(["docker", "run", "--rm", "--network", "none", "--entrypoint", "sh", image, "-c", probe,
                          "sh", *exes], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout == "", out.stdout + out.stderr


def test_missing_names_the_executables_not_found():
    assert LANGUAGES["java"].missing(lambda exe: None) == ["java", "javac"]
    assert LANGUAGES["java"].missing(lambda exe: "/usr/bin/" + exe) == []


# Java's public class decides the file name; the rest of the source must not fool the finder.
@pytest.mark.parametrize("source, main", [
    ("public class Solution { public static void main(String[] a) {} }", "Solution"),
    ("public final class Sol<T extends Comparable<T>> { public static void main(String... a) {} }", "Sol"),
    ("final public class Odd { public static void main(String[] a) {} }", "Odd"),
    ("@SuppressWarnings(\"unchecked\")\npublic class Ann { public static void main(String[] a) {} }", "Ann"),
    ("/* public class Old { } */\npublic class Real { public static void main(String[] a) {} }", "Real"),
    ("// public class Old\nclass Helper {}\nclass Runner { public static void main(String[] a) {} }", "Runner"),
    ("class Main {\n  static class Pair { int a; }\n  public static void main(String[] args) {}\n}", "Main"),
    ("class Pair {}\nclass Main {\n  static class In { static void main(int x) {} }\n"
     "  public static void main(String[] a) { String s = \"public class Fake {\"; char c = '{'; }\n}", "Main"),
    ("class A { Object o = new Object() { public String toString() { return \"}\"; } }; }\n"
     "public class B { public static void main(String[] a) {} }", "B"),
    ("interface Shape {}\nclass Prog { public static void main(String[] a) {\n"
     "  String t = \"\"\"\n  public class X {\n  \"\"\"; } }", "Prog"),
    ("public record Pt(int x) { public static void main(String[] a) {} }", "Pt"),
    ("class Only {}", "Only"),
    ("int x;", "Main"),
])
def test_java_entry_point_is_the_class_javac_needs(source, main):
    assert _java_main(source) == main
    assert LANGUAGES["java"].source_file(source) == f"{main}.java"


def test_java_entry_point_search_stays_linear_on_hostile_sources():
    for source in ("class a{}" * 20000, "class a{" * 20000, "/*" * 50000, '"' * 100000):
        assert _java_main(source) in ("a", "Main")


def _build_and_run_bare(language: str, tmp_path, build_as_mb: int | None, run_as_mb: int, memory_mb: int):
    """The row's own commands, outside any sandbox, under ``prlimit --as``: facts about the toolchain."""
    lang = LANGUAGES[language]
    src = PROGRAMS[language]["add"]
    (tmp_path / lang.source_file(src)).write_text(src)
    (tmp_path / "tmp").mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": str(tmp_path)}
    env.update({k: v.replace("/tmp", str(tmp_path / "tmp")) for k, v in lang.environment(memory_mb).items()})

    def limited(argv: list[str], as_mb: int | None) -> list[str]:
        return argv if as_mb is None else ["prlimit", f"--as={as_mb << 20}", "--", *argv]

    if lang.compile_argv(src):
        p = subprocess.run(limited(lang.compile_argv(src), build_as_mb), cwd=tmp_path, env=env, capture_output=True,
                           timeout=120)
        assert p.returncode == 0, p.stderr.decode()[-1000:]
    p = subprocess.run(limited(lang.run_argv(src, memory_mb), run_as_mb), cwd=tmp_path, env=env,
                       input=ADD_STDIN, capture_output=True, timeout=60)
    assert (p.returncode, p.stdout) == (0, ADD_STDOUT), p.stderr.decode()[-1000:]


@pytest.mark.parametrize("memory_mb", [64, 1024])
@pytest.mark.parametrize("language", [name for name, lang in LANGUAGES.items() if lang.memory == "rlimit"])
def test_rlimit_rows_build_and_run_under_their_address_space_limit(language, memory_mb, tmp_path):
    _needs(language)
    lang = LANGUAGES[language]
    _build_and_run_bare(language, tmp_path, lang.compile_memory_mb, memory_mb, memory_mb)


@pytest.mark.parametrize("memory_mb", [64, 1024])
@pytest.mark.parametrize("language", [name for name, lang in LANGUAGES.items() if lang.memory == "cgroup"])
def test_cgroup_rows_start_within_their_address_space_fallback(language, memory_mb, tmp_path):
    # Without cgroups these rows get RLIMIT_AS = memory + as_headroom_mb: the runtime must start in it.
    _needs(language)
    lang = LANGUAGES[language]
    _build_and_run_bare(language, tmp_path, lang.compile_memory_mb + lang.as_headroom_mb,
                        memory_mb + lang.as_headroom_mb, memory_mb)


# ---------------------------------------------------------------- sandbox.run per language

@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("language", ALL)
def test_run_reads_stdin_and_writes_stdout(backend, language):
    _needs(language)
    r = _backend(backend).run(language, PROGRAMS[language]["add"], stdin=ADD_STDIN, limits=RUN)
    assert r.status == RunStatus.ok, (r.detail, r.stderr[-500:], r.compile_output)
    assert r.stdout == ADD_STDOUT


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("language", COMPILED)
def test_run_reports_a_compile_error_with_the_compilers_message(backend, language):
    _needs(language)
    r = _backend(backend).run(language, PROGRAMS[language]["broken"], limits=RUN)
    assert r.status == RunStatus.compile_error, r.detail
    # The compiler's own words (Go's name no "error", just the file and line).
    assert "error" in r.compile_output.lower() or "main.go:" in r.compile_output, r.compile_output


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("language", ALL)
def test_run_stops_a_busy_loop_at_the_time_limit(backend, language):
    _needs(language)
    r = _backend(backend).run(language, PROGRAMS[language]["spin"], limits=SPIN)
    assert r.status == RunStatus.timeout, (r.detail, r.stderr[-300:])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("language", ALL)
def test_run_stops_a_growing_heap_at_the_memory_limit(backend, language):
    _needs(language)
    r = _backend(backend).run(language, PROGRAMS[language]["hoard"], limits=HOARD)
    assert r.status == RunStatus.memory_limit, (r.detail, r.exit_code, r.stderr[-300:])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("language", ALL)
def test_run_reports_a_nonzero_exit_as_a_runtime_error(backend, language):
    _needs(language)
    r = _backend(backend).run(language, PROGRAMS[language]["crash"], limits=RUN)
    assert r.status == RunStatus.runtime_error, (r.detail, r.stderr[-300:])
    assert r.exit_code == 3 and b"boom" in r.stderr


DEEP = {
    "java": "public class Deep { static int f(int n) { return n == 0 ? 0 : 1 + f(n - 1); }\n"
            "  public static void main(String[] a) { System.out.println(f(200000)); } }\n",
    "javascript": "function f(n) { return n === 0 ? 0 : 1 + f(n - 1); }\nconsole.log(f(200000));\n",
}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("language", sorted(DEEP))
def test_run_allows_deep_recursion_where_the_row_promises_it(backend, language):
    # -Xss64m for Java; for Node a raised stack limit under --stack-size (else V8 segfaults).
    _needs(language)
    r = _backend(backend).run(language, DEEP[language], limits=RUN)
    assert (r.status, r.stdout) == (RunStatus.ok, b"200000\n"), (r.detail, r.stderr[-300:])


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_go_import_outside_the_standard_library_is_a_compile_error(backend):
    # Offline: no module proxy to fetch it from, and no attempt to.
    _needs("go")
    source = 'package main\nimport "github.com/pkg/errors"\nfunc main() { _ = errors.New("x") }\n'
    r = _backend(backend).run("go", source, limits=RUN)
    assert r.status == RunStatus.compile_error, r.detail
    assert "github.com/pkg/errors" in r.compile_output


# ---------------------------------------------------------------- the code verifier per language

FENCE = {"python": "python", "c": "c", "cpp": "cpp", "java": "java", "javascript": "js", "go": "go", "rust": "rust"}
ONE = {"inputs": ["2 3\n"], "outputs": ["5\n"]}


def score(completion: str, ground_truth, **options):
    return verifiers.score("code", completion, ground_truth, options)


def fenced(fence: str, code: str) -> str:
    return f"Here is my solution.\n```{fence}\n{code}```\n"


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    _backend(request.param)
    monkeypatch.setenv(sandbox.BACKEND_ENV, request.param)
    return request.param


@pytest.mark.parametrize("language", ALL)
def test_code_right_answer_in_every_language_scores_one(backend, language):
    _needs(language)
    v = score(fenced(FENCE[language], PROGRAMS[language]["add"]), ADD)
    assert (v.reward, v.status) == (1.0, "ok"), v.detail
    assert (v.detail["language"], v.detail["passed"], v.detail["total"]) == (language, 3, 3)


@pytest.mark.parametrize("language", ALL)
def test_code_wrong_answer_in_every_language_scores_what_it_passed(backend, language):
    _needs(language)
    v = score(fenced(FENCE[language], PROGRAMS[language]["wrong"]), ADD)
    assert (v.reward, v.status) == (0.0, "ok"), v.detail
    assert v.detail.get("statuses") == {"wrong_answer": 3}, v.detail


@pytest.mark.parametrize("language", COMPILED)
def test_code_compile_error_scores_zero_with_the_compilers_message(backend, language):
    _needs(language)
    v = score(fenced(FENCE[language], PROGRAMS[language]["broken"]), ADD)
    assert (v.reward, v.status) == (0.0, "ok"), v.detail
    assert v.detail.get("reason") == "compile error", v.detail
    assert "error" in v.detail["compile_output"].lower() or "main.go:" in v.detail["compile_output"], v.detail


@pytest.mark.parametrize("language", ALL)
def test_code_time_limit_in_every_language(backend, language):
    _needs(language)
    v = score(fenced(FENCE[language], PROGRAMS[language]["spin"]), ONE, test_timeout_s=1)
    assert (v.reward, v.status) == (0.0, "ok")
    assert v.detail.get("statuses") == {"timeout": 1}, v.detail


@pytest.mark.parametrize("language", ALL)
def test_code_memory_limit_in_every_language(backend, language):
    _needs(language)
    v = score(fenced(FENCE[language], PROGRAMS[language]["hoard"]), ONE, memory_mb=128)
    assert (v.reward, v.status) == (0.0, "ok")
    assert v.detail.get("statuses") == {"memory_limit": 1}, v.detail


@pytest.mark.parametrize("fence", sorted({a for lang in LANGUAGES.values() for a in lang.aliases}))
def test_code_every_fence_alias_picks_its_language(fence):
    language = by_fence(fence).name
    _needs(language)
    v = score(fenced(fence, PROGRAMS[language]["add"]), ONE)
    assert v.reward == 1.0, v.detail
    assert v.detail["language"] == language


@pytest.mark.parametrize("language", ALL)
def test_code_options_language_applies_to_a_bare_fence(language):
    _needs(language)
    v = score(fenced("", PROGRAMS[language]["add"]), ONE, language=language)
    assert v.reward == 1.0, v.detail
    assert v.detail["language"] == language


def test_python_only_tests_with_another_language_in_the_options_are_invalid():
    gt = {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}
    v = score("```\nint add(int a, int b) { return a + b; }\n```", gt, language="c")
    assert v.status == "invalid", v.detail


def test_code_fence_language_wins_over_options_language():
    _needs("c")
    v = score(fenced("c", PROGRAMS["c"]["add"]), ONE, language="rust")
    assert (v.reward, v.detail["language"]) == (1.0, "c")


@pytest.mark.parametrize("language", [name for name in ALL if name != "python"])
def test_code_call_based_tests_answered_in_another_language_earn_nothing(language):
    gt = {"fn_name": "add", "inputs": [[1, 2]], "outputs": [3]}
    v = score(fenced(FENCE[language], PROGRAMS[language]["add"]), gt)
    # the model's choice, so a wrong answer: `invalid` is for the dataset's faults only
    assert (v.status, v.reward) == ("ok", 0.0), v.detail
    assert "need a Python solution" in v.detail["reason"]


@pytest.mark.parametrize("language", [name for name in ALL if name != "python"])
def test_code_assert_based_tests_answered_in_another_language_earn_nothing(language):
    gt = {"test_list": ["assert add(1, 2) == 3"]}
    v = score(fenced(FENCE[language], PROGRAMS[language]["add"]), gt)
    # the model's choice, so a wrong answer: `invalid` is for the dataset's faults only
    assert (v.status, v.reward) == ("ok", 0.0), v.detail
    assert "need a Python solution" in v.detail["reason"]
