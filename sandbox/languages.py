"""Every language the sandbox runs: one row each, in one place.

A row says how a program in that language is found (fence names), stored
(source file), built (compile command and budget) and run (run command), how
its memory is limited, and which Debian packages provide its toolchain.
Adding a language is one row here plus its packages and tests.

Memory models:
- ``rlimit``: ``RLIMIT_AS`` = the run's memory limit (C, C++, Python, Rust:
  their address space is close to what they use).
- ``cgroup``: no ``RLIMIT_AS`` (the JVM, Go's runtime and V8 reserve far more
  address space than they use, and die at start under a plain address-space
  limit); the session's cgroup memory limit bounds them, and the runtime's
  own flag (``{memory_mb}`` in ``run``/``env``) keeps its heap inside it.
  Without cgroups the runtime flag applies, and ``RLIMIT_AS`` = memory limit +
  ``as_headroom_mb`` bounds what the flag does not (off-heap buffers, Go's soft
  ``GOMEMLIMIT``); ``limits_in_force`` says so.

Commands are argv lists; ``{src}`` is the source file name, ``{main}`` the
entry point (Java's public class), ``{memory_mb}`` the run's memory limit.
Standard library only: ``deploy/install-system-deps.sh`` runs this file to list
packages (``python3 sandbox/languages.py packages``) before any venv exists.
"""
from __future__ import annotations

import sys

if __name__ == "__main__" and sys.path and sys.path[0] == __file__.rpartition("/")[0]:
    # Run as a script, this directory comes first on sys.path and its types.py would shadow the stdlib's.
    del sys.path[0]

import re
import shutil
from dataclasses import dataclass, field
from typing import Callable, Literal

MemoryModel = Literal["rlimit", "cgroup"]
SANDBOX_PATH = "/usr/local/bin:/usr/bin:/bin"


_JAVA_NOISE = re.compile(r'''"""(?:[^"\\]|\\.|"(?!""))*"""|"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|//[^\n]*|/\*.*?\*/''', re.S)
_JAVA_TYPE = re.compile(r"\b(class|interface|enum|record)\s+([A-Za-z_$][\w$]*)")
_JAVA_MAIN = re.compile(r"\bstatic\b[^;{}()=]*\bvoid\s+main\s*\(")


def _java_main(source: str) -> str:
    """The class javac must find in a file of its own name: the public top-level class, else the
    top-level class declaring ``main``, else the first top-level class, else ``Main``.

    Comments, strings and text blocks are blanked first (a ``public class Old`` in a comment
    doesn't count), and only top-level types count (a nested ``static class Pair`` before ``main``
    is not the entry point).
    """
    code = _JAVA_NOISE.sub(lambda m: " " * len(m.group(0)) if m.group(0)[0] in "/" else '""', source)
    tops: list[tuple[str, bool, bool]] = []  # name, public, declares main
    depth = 0
    pos = 0
    while True:
        m = _JAVA_TYPE.search(code, pos)
        if m is None:
            break
        depth += code.count("{", pos, m.start()) - code.count("}", pos, m.start())
        body = code.find("{", m.end())
        if body < 0:
            break
        if depth == 0:
            # Modifiers and annotations since the previous declaration or closing brace.
            head = code[max(code.rfind("}", 0, m.start()), code.rfind(";", 0, m.start()), 0):m.start()]
            end, d = body + 1, 1
            while end < len(code) and d:
                d += {"{": 1, "}": -1}.get(code[end], 0)
                end += 1
            # main belongs to this class only at depth 1 of its body.
            inner, level, flat = code[body + 1:end - 1], 0, []
            for ch in inner:
                if ch == "}":
                    level -= 1
                flat.append(ch if level == 0 else " ")
                if ch == "{":
                    level += 1
            tops.append((m.group(2), re.search(r"\bpublic\b", head) is not None,
                         _JAVA_MAIN.search("".join(flat)) is not None))
        depth += code.count("{", m.start(), body + 1) - code.count("}", m.start(), body + 1)
        pos = body + 1
    for pick in (lambda t: t[1], lambda t: t[2], lambda t: True):
        for name, public, has_main in tops:
            if pick((name, public, has_main)):
                return name
    return "Main"


@dataclass(frozen=True)
class Language:
    name: str
    aliases: tuple[str, ...]  # code-fence names (lower case), the name included
    source: str  # source file name in the work dir; may use {main}
    run: tuple[str, ...]  # argv; {main}, {memory_mb}
    compile: tuple[str, ...] | None = None  # argv run once per completion; None: interpreted
    # Wall and CPU budget of the build. 15 s: with the code task's 40 s of tests and slack it stays
    # inside the task's 60 s executor timeout (measured builds of small programs: 0.1-1.5 s).
    compile_time_s: float = 15.0
    compile_memory_mb: int = 1024
    memory: MemoryModel = "rlimit"
    env: dict[str, str] = field(default_factory=dict)  # extra environment of builds and runs
    packages: tuple[str, ...] = ()  # Debian packages providing the toolchain
    requires: tuple[str, ...] = ()  # executables that must be on the sandbox PATH
    # Host paths outside /usr the toolchain reads, bound read-only into the sandbox when they exist
    # (Debian's JDK keeps jvm.cfg and java.security under /etc; without them java and javac die at start).
    ro_binds: tuple[str, ...] = ()
    # ``cgroup`` rows in a session without cgroups: RLIMIT_AS = memory limit + this, which the runtime's
    # reservations fit in (measured: hello world starts, see docs/sandbox.md), so memory stays bounded,
    # if loosely. 0: no address-space limit at all without cgroups.
    as_headroom_mb: int = 0
    entry_point: Callable[[str], str] | None = None  # source -> {main}
    # The stack may grow up to the memory limit (RLIMIT_STACK), as judges allow: contest solutions
    # recurse deeply. Not for runtimes that size thread stacks by RLIMIT_STACK under an
    # address-space limit (Python's threads would not fit), nor those managing their own stacks.
    stack_is_memory: bool = False
    # Python runs can be a fork of the sandbox's warm supervisor instead of a new interpreter.
    fork_python: bool = False

    def main(self, source: str) -> str:
        return self.entry_point(source) if self.entry_point else "main"

    def source_file(self, source: str) -> str:
        return self.source.format(main=self.main(source))

    def compile_argv(self, source: str) -> list[str] | None:
        if self.compile is None:
            return None
        return [a.format(src=self.source_file(source), main=self.main(source)) for a in self.compile]

    def run_argv(self, source: str, memory_mb: int) -> list[str]:
        return [a.format(src=self.source_file(source), main=self.main(source), memory_mb=memory_mb)
                for a in self.run]

    def environment(self, memory_mb: int) -> dict[str, str]:
        return {k: v.format(memory_mb=memory_mb) for k, v in self.env.items()}

    def missing(self, which: Callable[[str], str | None] | None = None) -> list[str]:
        """Executables of this row not found on the sandbox's PATH (its read-only view of the host's
        /usr and /bin: a toolchain installed elsewhere, e.g. under ~/.cargo, is not there)."""
        which = which or (lambda exe: shutil.which(exe, path=SANDBOX_PATH))
        return [exe for exe in self.requires if which(exe) is None]


# Writable homes for toolchains that want one: /tmp is a size-capped tmpfs of the session.
_TOOL_HOME = {"HOME": "/tmp", "TMPDIR": "/tmp"}
# Runtimes size their thread pools by the host's CPU count; on a 64-core host that alone would pass
# the session's process limit (RLIMIT_NPROC counts threads). Two keeps every runtime well inside it.
_CPUS = 2
# JVM flags of javac and java: the serial collector and a capped CPU count keep the thread count low
# (RLIMIT_NPROC), no perf-data file, and small class/code reservations so that, without cgroups, the
# JVM starts under RLIMIT_AS = heap + as_headroom_mb.
_JVM = ("-XX:+UseSerialGC", f"-XX:ActiveProcessorCount={_CPUS}", "-XX:-UsePerfData",
        "-XX:CompressedClassSpaceSize=64m", "-XX:ReservedCodeCacheSize=64m", "-Xshare:auto")

LANGUAGES: dict[str, Language] = {lang.name: lang for lang in (
    Language("python", ("python", "py", "python3"), "main.py", ("python3", "-I", "main.py"),
             packages=("python3",), requires=("python3",), fork_python=True),
    Language("c", ("c",), "main.c", ("./main",),
             compile=("gcc", "-O2", "-std=gnu11", "-pipe", "-o", "main", "main.c", "-lm"),
             packages=("gcc", "libc6-dev"), requires=("gcc",), stack_is_memory=True),
    Language("cpp", ("cpp", "c++", "cc", "cxx"), "main.cpp", ("./main",),
             compile=("g++", "-O2", "-std=gnu++17", "-pipe", "-o", "main", "main.cpp"),
             packages=("g++",), requires=("g++",), stack_is_memory=True),
    # The full JIT (no TieredStopAtLevel=1) for the program: C1-only starts ~10 ms sooner but runs
    # compute-bound solutions up to ~2x slower, which would turn accepted solutions into timeouts.
    # javac is short-lived, so it gets C1 only. -Xss64m: contest solutions recurse deeply.
    Language("java", ("java",), "{main}.java",
             ("java", "-Xmx{memory_mb}m", "-Xss64m", *_JVM, "-cp", ".", "{main}"),
             compile=("javac", "-J-Xmx512m", "-J-XX:TieredStopAtLevel=1", *(f"-J{f}" for f in _JVM),
                      "-encoding", "UTF-8", "-nowarn", "-proc:none", "{src}"),
             memory="cgroup", packages=("openjdk-17-jdk-headless",), requires=("java", "javac"),
             entry_point=_java_main, ro_binds=("/etc/java-17-openjdk",), as_headroom_mb=1536,
             # One malloc arena per thread would reserve 64 MB each (address space, not memory).
             env={**_TOOL_HOME, "MALLOC_ARENA_MAX": "2"}),
    # V8 trusts --stack-size (KiB) blindly: above the real stack it segfaults instead of throwing
    # RangeError, so the run raises the soft stack limit to 64 MiB first and tells V8 a bit less.
    Language("javascript", ("javascript", "js", "node", "nodejs"), "main.js",
             ("prlimit", "--stack=67108864:", "--", "node", "--max-old-space-size={memory_mb}",
              "--stack-size=60000", f"--v8-pool-size={_CPUS}", "main.js"),
             memory="cgroup", packages=("nodejs",), requires=("node", "prlimit"), as_headroom_mb=1024,
             env={**_TOOL_HOME, "UV_THREADPOOL_SIZE": str(_CPUS)}),
    Language("go", ("go", "golang"), "main.go", ("./main",),
             compile=("go", "build", "-o", "main", "main.go"),
             memory="cgroup", packages=("golang-go",), requires=("go",), as_headroom_mb=1024,
             # Offline, standard library only: GOPATH mode (no go.mod, no module proxy, no VCS, no
             # toolchain download); an import outside the standard library is a compile error.
             env={**_TOOL_HOME, "GOCACHE": "/tmp/go-cache", "GOPATH": "/tmp/go", "GOPROXY": "off",
                  "GO111MODULE": "off", "GOTOOLCHAIN": "local", "CGO_ENABLED": "0",
                  "GOMAXPROCS": str(_CPUS), "GOMEMLIMIT": "{memory_mb}MiB"}),
    # One codegen unit: less total CPU and no codegen thread per core (RLIMIT_NPROC).
    Language("rust", ("rust", "rs"), "main.rs", ("./main",),
             compile=("rustc", "--edition", "2021", "-O", "-C", "codegen-units=1", "-C", "strip=symbols",
                      "-o", "main", "main.rs"),
             packages=("rustc",), requires=("rustc",), env=_TOOL_HOME, stack_is_memory=True),
)}

_ALIASES = {alias: lang for lang in LANGUAGES.values() for alias in lang.aliases}


def by_fence(name: str) -> Language | None:
    """The language a code fence names (``cpp``, ``c++``, ``py`` ...), or None."""
    return _ALIASES.get(name.strip().lower())


def get(name: str) -> Language | None:
    return LANGUAGES.get(name)


def ro_paths() -> list[str]:
    """Every existing host path some language's toolchain needs bound into the sandbox."""
    import os
    return sorted({p for lang in LANGUAGES.values() for p in lang.ro_binds if os.path.exists(p)})


def packages(names: list[str] | None = None) -> list[str]:
    """Debian packages of the named languages (all by default), deduplicated, in order."""
    out: list[str] = []
    for lang in LANGUAGES.values():
        if names and lang.name not in names:
            continue
        out += [p for p in lang.packages if p not in out]
    return out


def markdown_table() -> str:
    """The table as Markdown, as docs/tasks.md shows it (a test keeps the two equal)."""
    def cmd(argv: tuple[str, ...] | None) -> str:
        return "—" if argv is None else "`" + " ".join(argv).replace("|", "\\|") + "`"

    rows = ["| language | fences | file | compile (once per completion) | run (once per test) | environment | "
            "memory | Debian packages |", "|---|---|---|---|---|---|---|---|"]
    for lang in LANGUAGES.values():
        env = " ".join(f"{k}={v}" for k, v in lang.env.items())
        memory = lang.memory + (f" (without cgroups: address space + {lang.as_headroom_mb} MB)"
                                if lang.as_headroom_mb else "")
        rows.append(f"| {lang.name} | {', '.join(f'`{a}`' for a in lang.aliases)} | `{lang.source}` | "
                    f"{cmd(lang.compile)} | {cmd(lang.run)} | {f'`{env}`' if env else '—'} | {memory} | "
                    f"{', '.join(lang.packages)} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":  # python3 sandbox/languages.py packages|requires|table [lang ...]
    unknown = [name for name in sys.argv[2:] if name not in LANGUAGES]
    if unknown:
        sys.exit(f"unknown language(s) {' '.join(unknown)}; the table has {' '.join(LANGUAGES)}")
    if sys.argv[1:2] == ["packages"]:
        print(" ".join(packages(sys.argv[2:] or None)))
    elif sys.argv[1:2] == ["requires"]:  # executables the image build checks for
        print(" ".join(dict.fromkeys(exe for lang in LANGUAGES.values()
                                     if not sys.argv[2:] or lang.name in sys.argv[2:] for exe in lang.requires)))
    elif sys.argv[1:2] == ["table"]:
        print(markdown_table(), end="")
    else:
        sys.exit("usage: languages.py packages|requires|table [language ...]")
