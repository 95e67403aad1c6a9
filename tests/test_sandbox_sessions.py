"""The session API every backend implements: a work dir built once and run many times.

Real sandboxes, no mocks: the process backend always, docker when an engine
and the image are there (skipped with the reason otherwise), unsafe as the
development backend it is.
"""
from __future__ import annotations

import dataclasses
import json
import shutil

import pytest

from sandbox import languages
from sandbox.types import Limits, Program, RunStatus

QUICK = Limits(wall_time_s=3, cpu_time_s=2, memory_mb=256, max_processes=16, output_bytes=64 * 1024, file_size_mb=4)
ADD = "#include <cstdio>\nint main(){long a,b; if(scanf(\"%ld %ld\",&a,&b)!=2) return 2; printf(\"%ld\\n\",a+b);}"


def _backend(name):
    if name == "process":
        if not shutil.which("bwrap"):
            pytest.skip("bubblewrap is not installed")
        from sandbox.process import ProcessConfig, ProcessSandbox
        return ProcessSandbox(dataclasses.replace(ProcessConfig.from_env(), warm_sessions=1))
    if name == "docker":
        from sandbox.docker import DockerConfig, DockerSandbox
        from sandbox.types import SandboxUnavailable
        box = DockerSandbox(dataclasses.replace(DockerConfig.from_env(), pool_size=1))
        try:
            box.check()
        except SandboxUnavailable as e:
            pytest.skip(f"docker sandbox unavailable: {e}")
        return box
    from sandbox.unsafe import UnsafeSandbox
    return UnsafeSandbox()


@pytest.fixture(scope="module", params=["process", "docker", "unsafe"])
def box(request):
    b = _backend(request.param)
    yield b
    b.close()


def test_a_program_built_once_runs_for_every_test_of_the_session(box):
    cpp = languages.get("cpp")
    with box.session(QUICK) as s:
        s.put({"main.cpp": ADD.encode()})
        assert s.build(cpp, ADD, QUICK).status == RunStatus.ok
        outs = [s.exec(Program(("./main",)), stdin=f"{i} {i}".encode(), limits=QUICK).stdout for i in range(3)]
    assert outs == [b"0\n", b"2\n", b"4\n"]


def test_a_compile_error_comes_back_with_the_compilers_words(box):
    with box.session(QUICK) as s:
        s.put({"main.cpp": b"int main() { return nope; }"})
        r = s.build(languages.get("cpp"), "", QUICK)
    assert r.status == RunStatus.compile_error and "nope" in r.compile_output, r


def test_a_timeout_ends_the_run_but_not_the_session(box):
    with box.session(QUICK) as s:
        s.put({"main.py": b"import sys, time\nif sys.argv[1:] == ['hang']:\n    time.sleep(60)\nprint('alive')"})
        hang = s.exec(Program(python="main.py", argv=("hang",)), limits=dataclasses.replace(QUICK, wall_time_s=1))
        after = s.exec(Program(python="main.py"), limits=QUICK)
    assert hang.status == RunStatus.timeout, hang
    assert after.status == RunStatus.ok and after.stdout == b"alive\n", after


def test_scratch_areas_are_wiped_between_runs_and_the_work_dir_between_sessions(box):
    probe = b"import os, sys\nprint(sorted(os.listdir('.')), os.path.exists('/tmp/left'))\nopen('/tmp/left', 'w').close()"
    with box.session(QUICK) as s:
        s.put({"main.py": probe})
        first = s.exec(Program(python="main.py"), limits=QUICK).stdout
        second = s.exec(Program(python="main.py"), limits=QUICK).stdout
    with box.session(QUICK) as s:
        s.put({"other.py": b"import os\nprint(sorted(os.listdir('.')))"})
        third = s.exec(Program(python="other.py"), limits=QUICK).stdout
    if box.name != "unsafe":  # unsafe has no private /tmp
        assert first == second == b"['main.py'] False\n", (first, second)
    assert third == b"['other.py']\n", third


def test_side_input_and_side_output_travel_on_descriptors_3_and_4(box):
    src = b"import os\ndata = os.read(3, 100)\nos.write(4, data.upper())\nprint('stdout is separate')"
    with box.session(QUICK) as s:
        s.put({"main.py": src})
        r = s.exec(Program(python="main.py"), limits=QUICK, side_input=b"value", side_output=True)
    assert r.status == RunStatus.ok and r.side_output == b"VALUE" and r.stdout == b"stdout is separate\n", r


def test_stdin_is_a_read_only_file_whose_size_fstat_tells(box):
    src = b"import os\nprint(os.fstat(0).st_size)\ntry:\n    os.write(0, b'x')\nexcept OSError as e:\n    print('EBADF')"
    with box.session(QUICK) as s:
        s.put({"main.py": src})
        r = s.exec(Program(python="main.py"), stdin=b"12345", limits=QUICK)
    assert r.stdout == b"5\nEBADF\n", r


JUDGE = b"""
import json, os
data = b""
while True:
    chunk = os.read(4, 4096)
    if not chunk:
        break
    data += chunk
os.write(3, data)
answer = os.read(3, 4096)
os.write(1, json.dumps({"judge_got": answer.decode()}).encode())
"""
CANDIDATE = b"""
import os
question = os.read(3, 4096)
found = []
for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:
    for what in ('fd/4', 'fd/1', 'mem', 'environ'):
        try:
            with open(f'/proc/{pid}/{what}', 'rb') as f:
                found.append(what)
        except OSError:
            pass
os.write(3, b'answer to ' + question + b' reached: ' + ','.join(found).encode())
"""


def test_a_pair_joins_judge_and_candidate_and_only_the_judge_holds_its_input_and_report(box):
    with box.session(QUICK) as s:
        s.put({"candidate.py": CANDIDATE})
        p = s.pair(Program(python_source=JUDGE), Program(python="candidate.py"), judge_input=b"q1",
                   limits=QUICK, judge_limits=QUICK)
    report = json.loads(p.report)
    assert report["judge_got"].startswith("answer to q1 reached: "), report
    if box.name != "unsafe":
        # The candidate reached no descriptor or memory of the judge (nor the supervisor's).
        reached = report["judge_got"].split("reached: ")[1].split(",")
        assert not [w for w in reached if w in ("fd/4", "mem")], reached
