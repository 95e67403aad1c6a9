"""The same small programs in every language of sandbox/languages.py, for the language tests.

Each language has:
  add     reads "a b" lines until EOF and prints a+b for each (the right answer)
  wrong   reads the same and prints a-b (a wrong answer that runs fine)
  broken  does not compile (compiled languages only)
  spin    never ends (a busy loop the optimiser can't remove)
  hoard   allocates and touches memory in 16 MB blocks forever, the way real programs
          do in each language (so the status comes from the language's own failure)
  crash   exits with status 3 after writing to stderr
"""
from __future__ import annotations

import shutil

from sandbox.languages import LANGUAGES

PROGRAMS: dict[str, dict[str, str]] = {
    "python": {
        "add": "import sys\nfor line in sys.stdin:\n    if line.strip():\n        a, b = map(int, line.split())\n"
               "        print(a + b)\n",
        "wrong": "import sys\nfor line in sys.stdin:\n    if line.strip():\n        a, b = map(int, line.split())\n"
                 "        print(a - b)\n",
        "spin": "x = 0\nwhile True:\n    x += 1\n",
        "hoard": "hoard = []\nwhile True:\n    hoard.append(bytearray(16 << 20))\n",
        "crash": "import sys\nsys.stderr.write('boom\\n')\nsys.exit(3)\n",
    },
    "c": {
        "add": '#include <stdio.h>\nint main(void){long long a,b;while(scanf("%lld %lld",&a,&b)==2)'
               'printf("%lld\\n",a+b);return 0;}\n',
        "wrong": '#include <stdio.h>\nint main(void){long long a,b;while(scanf("%lld %lld",&a,&b)==2)'
                 'printf("%lld\\n",a-b);return 0;}\n',
        "broken": "int main(void) { return 0 }\n",
        "spin": "int main(void){volatile unsigned long x=0;for(;;)x++;}\n",
        # The usual C idiom: perror on a failed malloc.
        "hoard": '#include <stdio.h>\n#include <stdlib.h>\n#include <string.h>\n'
                 'int main(void){for(;;){char*p=malloc(16<<20);if(!p){perror("malloc");return 1;}'
                 'memset(p,1,16<<20);}}\n',
        "crash": '#include <stdio.h>\nint main(void){fputs("boom\\n",stderr);return 3;}\n',
    },
    "cpp": {
        "add": "#include <iostream>\nint main(){long long a,b;while(std::cin>>a>>b)std::cout<<a+b<<'\\n';}\n",
        "wrong": "#include <iostream>\nint main(){long long a,b;while(std::cin>>a>>b)std::cout<<a-b<<'\\n';}\n",
        "broken": "#include <vector>\nint main(){ std::vector<int> v; v.push_back(); }\n",
        "spin": "int main(){volatile unsigned long x=0;for(;;)x++;}\n",
        "hoard": "#include <cstring>\n#include <vector>\nint main(){std::vector<char*> h;"
                 "for(;;){char*p=new char[16<<20];std::memset(p,1,16<<20);h.push_back(p);}}\n",
        "crash": "#include <cstdio>\nint main(){std::fputs(\"boom\\n\",stderr);return 3;}\n",
    },
    "java": {
        # The public class is not Main: the table finds the class javac needs.
        "add": "import java.io.*;\nimport java.util.*;\n\npublic class Solution {\n"
               "    public static void main(String[] args) throws IOException {\n"
               "        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));\n"
               "        StringBuilder out = new StringBuilder();\n        String line;\n"
               "        while ((line = in.readLine()) != null) {\n"
               "            StringTokenizer t = new StringTokenizer(line);\n"
               "            if (!t.hasMoreTokens()) continue;\n"
               "            long a = Long.parseLong(t.nextToken()), b = Long.parseLong(t.nextToken());\n"
               "            out.append(a + b).append('\\n');\n        }\n"
               "        System.out.print(out);\n    }\n}\n",
        "wrong": "import java.util.*;\npublic class Main { public static void main(String[] a) {"
                 " Scanner s = new Scanner(System.in); while (s.hasNextLong()) { long x = s.nextLong(),"
                 " y = s.nextLong(); System.out.println(x - y); } } }\n",
        "broken": "public class Main { public static void main(String[] a) { int x = \"no\"; } }\n",
        "spin": "public class Main { static volatile long x; public static void main(String[] a) {"
                " for (;;) x++; } }\n",
        "hoard": "import java.util.*;\npublic class Main { public static void main(String[] a) {"
                 " List<byte[]> h = new ArrayList<>(); for (;;) { byte[] b = new byte[16 << 20];"
                 " Arrays.fill(b, (byte) 1); h.add(b); } } }\n",
        "crash": "public class Main { public static void main(String[] a) { System.err.println(\"boom\");"
                 " System.exit(3); } }\n",
    },
    "javascript": {
        "add": "const lines = require('fs').readFileSync(0, 'utf8').split('\\n');\nconst out = [];\n"
               "for (const l of lines) { if (!l.trim()) continue; const [a, b] = l.trim().split(/\\s+/).map(BigInt);"
               " out.push(String(a + b)); }\nconsole.log(out.join('\\n'));\n",
        "wrong": "const lines = require('fs').readFileSync(0, 'utf8').split('\\n');\n"
                 "for (const l of lines) { if (!l.trim()) continue; const [a, b] = l.trim().split(/\\s+/).map(Number);"
                 " console.log(a - b); }\n",
        "spin": "let x = 0;\nfor (;;) { x++; }\n",
        "hoard": "const h = [];\nfor (;;) { const a = new Array(2 << 20).fill(1.5); h.push(a); }\n",
        "crash": "process.stderr.write('boom\\n');\nprocess.exit(3);\n",
    },
    "go": {
        "add": 'package main\n\nimport (\n\t"bufio"\n\t"fmt"\n\t"os"\n)\n\nfunc main() {\n'
               '\tin := bufio.NewReader(os.Stdin)\n\tout := bufio.NewWriter(os.Stdout)\n\tdefer out.Flush()\n'
               '\tvar a, b int64\n\tfor {\n\t\tif _, err := fmt.Fscan(in, &a, &b); err != nil {\n\t\t\treturn\n\t\t}\n'
               '\t\tfmt.Fprintln(out, a+b)\n\t}\n}\n',
        "wrong": 'package main\nimport "fmt"\nfunc main() {\n\tvar a, b int64\n'
                 '\tfor {\n\t\tif _, err := fmt.Scan(&a, &b); err != nil {\n\t\t\treturn\n\t\t}\n'
                 '\t\tfmt.Println(a - b)\n\t}\n}\n',
        "broken": 'package main\nimport "fmt"\nfunc main() { x := 1 }\n',
        "spin": "package main\nvar x uint64\nfunc main() {\n\tfor {\n\t\tx++\n\t}\n}\n",
        "hoard": "package main\nvar hoard [][]byte\nfunc main() {\n\tfor {\n\t\tb := make([]byte, 16<<20)\n"
                 "\t\tfor i := range b {\n\t\t\tb[i] = 1\n\t\t}\n\t\thoard = append(hoard, b)\n\t}\n}\n",
        "crash": 'package main\nimport "os"\nfunc main() {\n\tos.Stderr.WriteString("boom\\n")\n\tos.Exit(3)\n}\n',
    },
    "rust": {
        "add": "use std::io::{self, BufRead, Write};\nfn main() {\n    let stdin = io::stdin();\n"
               "    let mut out = io::BufWriter::new(io::stdout());\n"
               "    for line in stdin.lock().lines() {\n        let line = line.unwrap();\n"
               "        let v: Vec<i64> = line.split_whitespace().map(|x| x.parse().unwrap()).collect();\n"
               "        if v.len() == 2 { writeln!(out, \"{}\", v[0] + v[1]).unwrap(); }\n    }\n}\n",
        "wrong": "use std::io::BufRead;\nfn main() {\n    for line in std::io::stdin().lock().lines() {\n"
                 "        let v: Vec<i64> = line.unwrap().split_whitespace().map(|x| x.parse().unwrap()).collect();\n"
                 "        if v.len() == 2 { println!(\"{}\", v[0] - v[1]); }\n    }\n}\n",
        "broken": "fn main() { let x: i32 = \"no\"; }\n",
        "spin": "fn main() { let mut x: u64 = 0; loop { unsafe { std::ptr::write_volatile(&mut x, x + 1); } } }\n",
        "hoard": "fn main() { let mut h: Vec<Vec<u8>> = Vec::new(); loop { h.push(vec![1u8; 16 << 20]); } }\n",
        "crash": "fn main() { eprintln!(\"boom\"); std::process::exit(3); }\n",
    },
}

ADD = {"inputs": ["1 2\n", "3 4\n10 -5\n", "1000000000000 1\n"], "outputs": ["3\n", "7\n5\n", "1000000000001\n"]}

assert set(PROGRAMS) == set(LANGUAGES), "every language in sandbox/languages.py needs its test programs"


def toolchain_missing(language: str) -> str | None:
    """Why ``language`` can't run on this host (its executables are not on the PATH), or None."""
    missing = LANGUAGES[language].missing(shutil.which)
    if missing:
        return (f"{language} toolchain missing here ({', '.join(missing)}): "
                f"bash deploy/install-system-deps.sh installs {' '.join(LANGUAGES[language].packages)}")
    return None


COMPILED = [name for name, lang in LANGUAGES.items() if lang.compile is not None]
