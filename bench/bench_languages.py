"""The same stdin/stdout problems in every language: POST /score beside a plain compile-and-run loop.

Three small problems (sum of a pair per line, maximum of a list, words in reverse order), a correct
solution to each in every language of sandbox/languages.py, each item a completion with --tests
tests. Per language the items are scored two ways:

(a) ``POST /score`` of a real service (``--url``, or one started here with ``--workers``), one batch
    per language;
(b) a plain loop, sequential and unsandboxed: for each item, compile once with the table's own
    command (same flags), then run the program once per test and compare tokens.

It prints items/s of both and the ratio (a)/(b) per language; the target is >= 1 for every one.
A language whose toolchain is missing here is left out and named.

    python bench/bench_languages.py [--languages c,cpp,...] [--items 12] [--tests 5] [--workers 2]
                                    [--backend process|docker] [--url URL] [--skip-service]
"""
from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from sandbox.languages import LANGUAGES, Language  # noqa: E402

FENCE = {"python": "python", "c": "c", "cpp": "cpp", "java": "java", "javascript": "javascript", "go": "go",
         "rust": "rust"}

# problem -> language -> solution
SOLUTIONS: dict[str, dict[str, str]] = {
    "pairs": {  # each line "a b": print a+b
        "python": "import sys\nfor line in sys.stdin:\n    if line.strip():\n        a, b = map(int, line.split())\n"
                  "        print(a + b)\n",
        "c": '#include <stdio.h>\nint main(void){long long a,b;while(scanf("%lld %lld",&a,&b)==2)'
             'printf("%lld\\n",a+b);return 0;}\n',
        "cpp": "#include <iostream>\nint main(){std::ios::sync_with_stdio(false);long long a,b;"
               "while(std::cin>>a>>b)std::cout<<a+b<<'\\n';}\n",
        "java": "import java.io.*;\nimport java.util.*;\npublic class Main { public static void main(String[] x)"
                " throws IOException { BufferedReader r = new BufferedReader(new InputStreamReader(System.in));"
                " StringBuilder sb = new StringBuilder(); String l; while ((l = r.readLine()) != null) {"
                " StringTokenizer t = new StringTokenizer(l); if (!t.hasMoreTokens()) continue;"
                " long a = Long.parseLong(t.nextToken()), b = Long.parseLong(t.nextToken());"
                " sb.append(a + b).append('\\n'); } System.out.print(sb); } }\n",
        "javascript": "const out = [];\nfor (const l of require('fs').readFileSync(0, 'utf8').split('\\n')) {"
                      " if (!l.trim()) continue; const [a, b] = l.trim().split(/\\s+/).map(Number);"
                      " out.push(a + b); }\nconsole.log(out.join('\\n'));\n",
        "go": 'package main\nimport ("bufio";"fmt";"os")\nfunc main() { in := bufio.NewReader(os.Stdin);'
              ' out := bufio.NewWriter(os.Stdout); defer out.Flush(); var a, b int64;'
              ' for { if _, e := fmt.Fscan(in, &a, &b); e != nil { return }; fmt.Fprintln(out, a+b) } }\n',
        "rust": "use std::io::*;\nfn main() { let mut s = String::new(); stdin().read_to_string(&mut s).unwrap();"
                " let mut o = String::new(); for l in s.lines() { let v: Vec<i64> = l.split_whitespace()"
                ".map(|x| x.parse().unwrap()).collect(); if v.len() == 2 { o += &format!(\"{}\\n\", v[0] + v[1]); } }"
                " print!(\"{}\", o); }\n",
    },
    "max": {  # "n" then n integers: print the largest
        "python": "n = int(input())\nprint(max(map(int, input().split())))\n",
        "c": '#include <stdio.h>\nint main(void){int n;long long x,m;scanf("%d",&n);scanf("%lld",&m);'
             'for(int i=1;i<n;i++){scanf("%lld",&x);if(x>m)m=x;}printf("%lld\\n",m);return 0;}\n',
        "cpp": "#include <bits/stdc++.h>\nint main(){int n;std::cin>>n;std::vector<long long> v(n);"
               "for(auto&x:v)std::cin>>x;std::cout<<*std::max_element(v.begin(),v.end())<<'\\n';}\n",
        "java": "import java.util.*;\npublic class Maximum { public static void main(String[] a) {"
                " Scanner s = new Scanner(System.in); int n = s.nextInt(); long m = Long.MIN_VALUE;"
                " for (int i = 0; i < n; i++) m = Math.max(m, s.nextLong()); System.out.println(m); } }\n",
        "javascript": "const t = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/).map(Number);\n"
                      "console.log(Math.max(...t.slice(1, 1 + t[0])));\n",
        "go": 'package main\nimport ("bufio";"fmt";"os")\nfunc main() { in := bufio.NewReader(os.Stdin); var n int;'
              ' fmt.Fscan(in, &n); var m, x int64; fmt.Fscan(in, &m);'
              ' for i := 1; i < n; i++ { fmt.Fscan(in, &x); if x > m { m = x } }; fmt.Println(m) }\n',
        "rust": "use std::io::*;\nfn main() { let mut s = String::new(); stdin().read_to_string(&mut s).unwrap();"
                " let v: Vec<i64> = s.split_whitespace().map(|x| x.parse().unwrap()).collect();"
                " let n = v[0] as usize; println!(\"{}\", v[1..=n].iter().max().unwrap()); }\n",
    },
    "reverse": {  # one line of words: print them in reverse order
        "python": "print(' '.join(reversed(input().split())))\n",
        "c": '#include <stdio.h>\nint main(void){static char w[1000][64];int n=0;'
             'while(n<1000&&scanf("%63s",w[n])==1)n++;for(int i=n-1;i>=0;i--)printf("%s%c",w[i],i?\' \':\'\\n\');'
             'return 0;}\n',
        "cpp": "#include <bits/stdc++.h>\nint main(){std::vector<std::string> w;std::string s;"
               "while(std::cin>>s)w.push_back(s);for(size_t i=w.size();i-->0;)std::cout<<w[i]<<(i?' ':'\\n');}\n",
        "java": "import java.io.*;\nimport java.util.*;\npublic class Main { public static void main(String[] a)"
                " throws IOException { List<String> w = new ArrayList<>(Arrays.asList(new BufferedReader("
                "new InputStreamReader(System.in)).readLine().trim().split(\"\\\\s+\"))); Collections.reverse(w);"
                " System.out.println(String.join(\" \", w)); } }\n",
        "javascript": "const w = require('fs').readFileSync(0, 'utf8').trim().split(/\\s+/);\n"
                      "console.log(w.reverse().join(' '));\n",
        "go": 'package main\nimport ("bufio";"fmt";"os";"strings")\nfunc main() { r := bufio.NewReader(os.Stdin);'
              ' l, _ := r.ReadString(\'\\n\'); w := strings.Fields(l);'
              ' for i, j := 0, len(w)-1; i < j; i, j = i+1, j-1 { w[i], w[j] = w[j], w[i] };'
              ' fmt.Println(strings.Join(w, " ")) }\n',
        "rust": "fn main() { let mut s = String::new(); std::io::stdin().read_line(&mut s).unwrap();"
                " let w: Vec<&str> = s.split_whitespace().rev().collect(); println!(\"{}\", w.join(\" \")); }\n",
    },
}


def make_tests(problem: str, rng: random.Random, n: int) -> tuple[list[str], list[str]]:
    inputs, outputs = [], []
    for _ in range(n):
        if problem == "pairs":
            pairs = [(rng.randint(-10**9, 10**9), rng.randint(-10**9, 10**9)) for _ in range(rng.randint(1, 20))]
            inputs.append("".join(f"{a} {b}\n" for a, b in pairs))
            outputs.append("".join(f"{a + b}\n" for a, b in pairs))
        elif problem == "max":
            xs = [rng.randint(-10**12, 10**12) for _ in range(rng.randint(1, 200))]
            inputs.append(f"{len(xs)}\n{' '.join(map(str, xs))}\n")
            outputs.append(f"{max(xs)}\n")
        else:
            words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randint(1, 8)))
                     for _ in range(rng.randint(1, 50))]
            inputs.append(" ".join(words) + "\n")
            outputs.append(" ".join(reversed(words)) + "\n")
    return inputs, outputs


def items_for(language: str, n_items: int, n_tests: int, seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    problems = list(SOLUTIONS)
    items = []
    for i in range(n_items):
        problem = problems[i % len(problems)]
        inputs, outputs = make_tests(problem, rng, n_tests)
        # A comment makes every completion distinct, as in RL batches (no build cache helps).
        source = SOLUTIONS[problem][language]
        marker = {"python": "#", "c": "//", "cpp": "//", "java": "//", "javascript": "//", "go": "//",
                  "rust": "//"}[language]
        items.append({"id": f"{language}-{problem}-{i}", "task": "code",
                      "completion": f"```{FENCE[language]}\n{source}{marker} item {i}\n```",
                      "source": f"{source}{marker} item {i}\n",
                      "ground_truth": {"inputs": inputs, "outputs": outputs}})
    return items


def plain_loop(lang: Language, items: list[dict]) -> tuple[float, int]:
    """Sequential, unsandboxed: compile once per item with the table's command, run once per test."""
    passed = 0
    t0 = time.perf_counter()
    for it in items:
        src = it["source"]
        with tempfile.TemporaryDirectory(prefix="bench-lang-") as d:
            (Path(d) / lang.source_file(src)).write_text(src)
            tmp = Path(d) / "tmp"
            tmp.mkdir()
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": d}
            env.update({k: v.replace("/tmp", str(tmp)) for k, v in lang.environment(512).items()})
            argv = lang.compile_argv(src)
            if argv is not None:
                p = subprocess.run(argv, cwd=d, env=env, capture_output=True, timeout=120)
                if p.returncode != 0:
                    continue
            run = lang.run_argv(src, 512)
            gt = it["ground_truth"]
            for inp, out in zip(gt["inputs"], gt["outputs"]):
                p = subprocess.run(run, cwd=d, env=env, input=inp.encode(), capture_output=True, timeout=60)
                passed += p.returncode == 0 and p.stdout.split() == out.encode().split()
    return time.perf_counter() - t0, passed


def via_service(items: list[dict], url: str) -> tuple[float, list[dict]]:
    body = {"items": [{k: v for k, v in it.items() if k != "source"} for it in items]}
    t0 = time.perf_counter()
    r = httpx.post(f"{url}/score", json=body, timeout=1800)
    r.raise_for_status()
    return time.perf_counter() - t0, r.json()["results"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--languages", default=",".join(LANGUAGES), help="comma-separated names from the table")
    ap.add_argument("--items", type=int, default=12, help="items (completions) per language")
    ap.add_argument("--tests", type=int, default=5, help="tests per item")
    ap.add_argument("--workers", type=int, default=os.cpu_count(), help="service workers")
    ap.add_argument("--backend", choices=["process", "docker", "unsafe"],
                    default=os.environ.get("REWARD_SERVICE_SANDBOX_BACKEND", "process"))
    ap.add_argument("--url", help="a running service (default: start one here)")
    ap.add_argument("--skip-service", action="store_true", help="only the plain loop")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so a started server is stopped too

    wanted = [name.strip() for name in args.languages.split(",") if name.strip()]
    unknown = [name for name in wanted if name not in LANGUAGES]
    if unknown:
        print(f"unknown languages: {', '.join(unknown)} (the table has {', '.join(LANGUAGES)})")
        return 2
    languages = []
    for name in wanted:
        missing = LANGUAGES[name].missing(shutil.which)
        if missing:
            print(f"skipping {name}: {', '.join(missing)} not installed "
                  f"(bash deploy/install-system-deps.sh installs {' '.join(LANGUAGES[name].packages)})")
        else:
            languages.append(name)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}; "
          f"{args.items} items x {args.tests} tests per language; service: "
          f"{'skipped' if args.skip_service else f'{args.backend} sandbox, {args.workers} workers'}")

    rows = []
    failures = 0
    with contextlib.ExitStack() as stack:
        url = None
        if not args.skip_service:
            if args.url:
                url = args.url
            else:
                from server import local_server

                url = stack.enter_context(local_server(workers=args.workers,
                                                       REWARD_SERVICE_SANDBOX_BACKEND=args.backend))
        for name in languages:
            lang = LANGUAGES[name]
            items = items_for(name, args.items, args.tests)
            plain_loop(lang, items[:1])  # warm the page cache: compilers, runtimes
            plain_s, plain_passed = plain_loop(lang, items)
            total = len(items) * args.tests
            if plain_passed != total:
                print(f"  {name}: the plain loop passed only {plain_passed}/{total} tests")
                failures += 1
            svc_s, svc_wrong = None, 0
            if url:
                via_service(items[:2], url)  # warm the workers
                svc_s, results = via_service(items, url)
                wrong = [r for r in results if r["reward"] != 1.0]
                for r in wrong[:3]:
                    print(f"  {name}: {r.get('id')} reward {r['reward']} status {r['status']}: "
                          f"{str(r.get('detail'))[:300]}")
                failures += bool(wrong)
                svc_wrong = len(wrong)
            rows.append((name, len(items), plain_s, svc_s, svc_wrong))

    print(f"\n{'language':<12}{'items':>6}{'plain s':>9}{'plain it/s':>11}{'service s':>11}{'svc it/s':>10}"
          f"{'ratio':>8}")
    for name, n, plain_s, svc_s, svc_wrong in rows:
        if svc_s is None:
            svc = f"{'-':>11}{'-':>10}{'-':>8}"
        elif svc_wrong:  # a fast wrong answer is no speed
            svc = f"{svc_s:>11.2f}{'-':>10}   ({svc_wrong} items not scored 1.0)"
        else:
            svc = f"{svc_s:>11.2f}{n / svc_s:>10.2f}{plain_s / svc_s:>7.2f}x"
        print(f"{name:<12}{n:>6}{plain_s:>9.2f}{n / plain_s:>11.2f}{svc}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
