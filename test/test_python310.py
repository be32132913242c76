"""The code stays Python 3.10-clean (issue 13 item 18): Humble on a Jetson (JetPack 6) runs 3.10.

Every module of the package, the training app, the benchmarks and the launch files compiles
with a real 3.10 interpreter (pyenv's here), and none imports a standard-library name that
3.11 added (syntax alone would not catch ``from typing import Self``).
"""
from __future__ import annotations

import ast
import glob
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("clip_depth_ros", "training", "benchmarks", "launch")
# standard-library names new in 3.11: importing one fails on 3.10
NEW_IN_311 = {"tomllib": None, "typing": {"Self", "LiteralString", "Never", "assert_never",
                                          "assert_type", "reveal_type", "Required",
                                          "NotRequired", "dataclass_transform", "TypeVarTuple",
                                          "Unpack", "get_overloads", "clear_overloads"},
              "enum": {"StrEnum", "ReprEnum", "verify", "EnumCheck", "FlagBoundary",
                       "global_enum", "member", "nonmember", "property"},
              "datetime": {"UTC"}, "asyncio": {"TaskGroup", "Runner", "timeout"},
              "contextlib": {"chdir"}, "hashlib": {"file_digest"}, "operator": {"call"}}
NEW_BUILTINS = {"ExceptionGroup", "BaseExceptionGroup"}
COMPILE_ALL = """
import sys
bad = []
for path in sys.argv[1:]:
    try:
        compile(open(path, encoding="utf-8").read(), path, "exec", dont_inherit=True)
    except SyntaxError as exc:
        bad.append(f"{path}:{exc.lineno}: {exc.msg}")
print("\\n".join(bad))
sys.exit(1 if bad else 0)
"""


def sources() -> list[Path]:
    """Every Python file of the folders that run on a robot or a training machine."""
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py"))


def python310() -> str:
    """A Python 3.10 interpreter: pyenv's build, else one on PATH (pyenv's shim is no
    interpreter unless 3.10 is selected, so the real binary comes first)."""
    homes = ("/root/.pyenv", str(Path.home() / ".pyenv"))
    candidates = sorted(c for home in homes for c in
                        glob.glob(f"{home}/versions/3.10*/bin/python3.10"))
    candidates += [c for c in [shutil.which("python3.10")] if c and "shims" not in c]
    assert candidates, ("no Python 3.10 interpreter (pyenv's or python3.10 on PATH): install "
                        "one, e.g. `pyenv install 3.10`")
    return candidates[0]


def test_every_module_compiles_with_python_310():
    files = sources()
    assert len(files) > 50
    proc = subprocess.run([python310(), "-c", COMPILE_ALL, *map(str, files)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def new_in_311(path: Path, root: Path = ROOT) -> list[str]:
    """Imports of 3.11-only standard-library names (and the new exception-group builtins)."""
    hits = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            hits += [a.name for a in node.names if a.name in NEW_IN_311
                     and NEW_IN_311[a.name] is None]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module in NEW_IN_311:
            names = NEW_IN_311[node.module]
            hits += [f"{node.module}.{a.name}" for a in node.names
                     if names is None or a.name in names]
        elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            names = NEW_IN_311.get(node.value.id)
            if names and node.attr in names and node.value.id != "enum":
                hits.append(f"{node.value.id}.{node.attr}")
        elif isinstance(node, ast.Name) and node.id in NEW_BUILTINS:
            hits.append(node.id)
    return [f"{path.relative_to(root)}: {hit}" for hit in hits]


def test_no_module_uses_a_311_only_standard_library_name():
    assert [hit for path in sources() for hit in new_in_311(path)] == []


def test_the_checks_see_311_only_code(tmp_path):
    """Control: ``except*`` fails the 3.10 compile and ``typing.Self`` the name scan."""
    bad = tmp_path / "bad.py"
    bad.write_text("try:\n    pass\nexcept* ValueError:\n    pass\n")
    proc = subprocess.run([python310(), "-c", COMPILE_ALL, str(bad)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "bad.py:3" in proc.stdout
    names = tmp_path / "names.py"
    names.write_text("from typing import Self\nimport tomllib\nimport datetime\n"
                     "x = datetime.UTC\n")
    assert sorted(new_in_311(names, tmp_path)) == [
        "names.py: datetime.UTC", "names.py: tomllib", "names.py: typing.Self"]
