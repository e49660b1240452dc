"""Console safety (#23): user strings printed verbatim, never wrapped, never read as markup.

The real CLI runs in a subprocess with ``COLUMNS=40``, its stdout and stderr pipes (and once a
terminal, through a pty). Paths and class names carry rich markup (``[bold]``, ``[/bold]``,
``[link=x]``), spaces, unicode, HTML and terminal control sequences; each must come out exactly,
on one line, with its control characters shown escaped. No assertion depends on the length of the
temporary path: every expected line is built from the path itself.
"""

from __future__ import annotations

import ast
import os
import pty
import re
import select
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from conftest import SRC

ESC_BEL = "run\x1b[2J\x1b]0;pwned\x07\nerror: all good"
ESC_BEL_SHOWN = "run\\x1b[2J\\x1b]0;pwned\\x07\\nerror: all good"


def _env(columns: int = 40, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR")}
    return {**env, "PYTHONPATH": str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""),
            "COLUMNS": str(columns), **extra}


def run40(*args: str, cwd: Path | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    """``python -m cnnlens ARGS`` at COLUMNS=40, stdout and stderr pipes."""
    return subprocess.run([sys.executable, "-m", "cnnlens", *args], cwd=cwd, env=_env(**extra),
                          capture_output=True, text=True, timeout=300)


def run_tty(*args: str, columns: int = 40) -> tuple[int, str, str]:
    """``python -m cnnlens ARGS`` with stdout and stderr on a terminal (a pty): exit code, the output
    without the terminal's colour and cursor sequences, and the raw output."""
    leader, follower = pty.openpty()
    p = subprocess.Popen([sys.executable, "-m", "cnnlens", *args], env=_env(columns, TERM="xterm"),
                         stdin=subprocess.DEVNULL, stdout=follower, stderr=follower, close_fds=True)
    os.close(follower)
    chunks = []
    while True:
        r, _, _ = select.select([leader], [], [], 300)
        if not r:
            p.kill()
            raise AssertionError("no output for 300 s")
        try:
            data = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    rc = p.wait(timeout=60)
    raw = b"".join(chunks).decode("utf-8", "replace").replace("\r\n", "\n")
    return rc, re.sub(r"\x1b\[[0-?]*[ -/]*[@-~]|\r", "", raw), raw  # colours, cursor moves


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _fer_csv(path: Path, bad_line: int | None = None) -> Path:
    """A 3-row FER2013 CSV (48x48 pixels); ``bad_line`` (file line number) gets a non-integer pixel."""
    rows = ["emotion,pixels,Usage"]
    for i in range(3):
        px = ["7"] * (48 * 48)
        if bad_line == i + 2:
            px[3] = "x"
        rows.append(f"{i % 7},{' '.join(px)},Training")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")
    return path


# ---- error lines --------------------------------------------------------------------------------

NASTY_DIRS = ["x[bold]y", "x[/bold]y", "a [link=x]click", "naïve 日本 dir", "esc\x1b[31mred"]


@pytest.mark.slow
def test_error_names_the_path_verbatim_on_one_line(tmp_path):
    """A path holding `[bold]`, `[/bold]`, `[link=x]`, spaces, unicode and an ANSI escape."""
    csv = _fer_csv(tmp_path.joinpath(*NASTY_DIRS) / "fer[red].csv", bad_line=3)
    p = run40("data", "inspect", f"fer2013:{csv}", "--out", str(tmp_path / "o"))
    assert p.returncode == 2, p.stderr
    shown = str(csv).replace("\x1b", "\\x1b")
    assert "\\x1b[31mred/fer[red].csv" in shown  # the expected text is the path, ESC spelled out
    lines = _lines(p.stderr)
    assert len(lines) == 1, p.stderr
    assert lines[0].startswith(f"error: {shown} line 3: ") and "--skip-bad-rows" in lines[0], p.stderr
    assert "\x1b" not in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_log_lines_and_data_inspect_show_the_path_verbatim(tmp_path):
    """The same path through the warning log line, the source line, the skipped list, the grid line."""
    csv = _fer_csv(tmp_path.joinpath(*NASTY_DIRS) / "fer[red].csv", bad_line=3)
    out = tmp_path / "out [link=x] \x07"
    p = run40("data", "inspect", f"fer2013:{csv}", "--skip-bad-rows", "--out", str(out))
    assert p.returncode == 0, p.stderr
    shown = str(csv).replace("\x1b", "\\x1b")
    assert f"warning: {shown}: skipped 1 bad row(s) (lines 3)" in _lines(p.stderr), p.stderr
    out_lines = _lines(p.stdout)
    assert any(ln.endswith(f" from {shown}") for ln in out_lines), p.stdout
    assert "  fer[red].csv line 3: pixel 4 is 'x', not an integer; pixels must be integers 0..255" \
        in out_lines, p.stdout
    assert f"sample grid: {tmp_path}/out [link=x] \\x07/samples.png" in out_lines, p.stdout
    assert "\x1b" not in p.stdout + p.stderr and "\x07" not in p.stdout + p.stderr


@pytest.mark.slow
def test_control_sequences_in_a_path_are_shown_escaped_and_forge_no_line(tmp_path):
    run = tmp_path / ESC_BEL
    p = run40("evaluate", str(run))
    assert p.returncode == 2, p.stderr
    assert "\x1b" not in p.stderr and "\x07" not in p.stderr
    lines = _lines(p.stderr)
    assert len(lines) == 1, p.stderr  # the newline inside the name does not start a second line
    assert lines[0] == f"error: run directory {tmp_path}/{ESC_BEL_SHOWN} does not exist"


@pytest.mark.slow
def test_error_lines_do_not_wrap_on_a_terminal(tmp_path):
    csv = _fer_csv(tmp_path / "a b" / ("long" * 12) / "fer[red].csv", bad_line=2)
    rc, out, _ = run_tty("data", "inspect", f"fer2013:{csv}", "--out", str(tmp_path / "o"))
    assert rc == 2, out
    assert f"error: {csv} line 2: " in out, out


@pytest.mark.slow
def test_argparse_errors_still_exit_2_with_the_value_escaped():
    p = run40("trust", "r", "--substrate", "no\x1b[2Jpe")
    assert p.returncode == 2
    assert "\x1b" not in p.stderr and "'no\\x1b[2Jpe'" in p.stderr and "invalid choice" in p.stderr
    assert run40("nosuchcommand").returncode == 2


# ---- bugs are not the user's mistake ------------------------------------------------------------

def _every_command_raises(monkeypatch, exc: BaseException) -> None:
    """``main()`` in-process, with every command's runner replaced by one that raises ``exc``."""
    from cnnlens import cli

    real = cli.build_parser

    def fail(args):
        raise exc

    monkeypatch.setattr(cli, "build_parser", lambda: (real()[0], {k: fail for k in real()[1]}))


def test_a_bug_exits_1_with_the_hint_not_as_a_user_error(monkeypatch, capsys):
    from cnnlens.cli import main

    monkeypatch.delenv("CNNLENS_DEBUG", raising=False)
    _every_command_raises(monkeypatch, RuntimeError("boom [bold]x\x1b[2J"))
    assert main(["methods", "list"]) == 1
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert "bug in cnnlens" in err and "RuntimeError: boom [bold]x\\x1b[2J" in err
    assert "-vv" in err and "CNNLENS_DEBUG=1" in err and "Traceback" not in err

    assert main(["-vv", "methods", "list"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "in fail" in err and "bug in cnnlens" in err

    monkeypatch.setenv("CNNLENS_DEBUG", "1")
    assert main(["methods", "list"]) == 1
    assert "in fail" in capsys.readouterr().err
    monkeypatch.setenv("CNNLENS_DEBUG", "0")
    assert main(["methods", "list"]) == 1
    assert "Traceback" not in capsys.readouterr().err


@pytest.mark.parametrize("exc", [TypeError("unsupported operand"), ValueError("math domain error"),
                                 KeyError("k"), ZeroDivisionError("division by zero")])
def test_exceptions_from_inside_cnnlens_are_bugs(exc, monkeypatch, capsys):
    from cnnlens.cli import main

    _every_command_raises(monkeypatch, exc)
    assert main(["methods", "list"]) == 1
    err = capsys.readouterr().err
    assert "bug in cnnlens" in err and type(exc).__name__ in err


@pytest.mark.parametrize("exc,text", [
    (None, "error: bad --x [red]; use --y"),
    (PermissionError(13, "Permission denied"), "error: [Errno 13] Permission denied"),
    (OSError(28, "No space left on device"), "error: [Errno 28] No space left on device"),
])
def test_user_errors_and_os_errors_exit_2_on_one_line(exc, text, monkeypatch, capsys):
    from cnnlens.cli import main
    from cnnlens.errors import CnnlensError

    _every_command_raises(monkeypatch, exc or CnnlensError("bad --x [red]; use --y"))
    assert main(["methods", "list"]) == 2
    err = capsys.readouterr().err
    assert err == text + "\n"


# ---- the scan: rich calls never format a non-literal string without safe() ----------------------

PKG = Path(__file__).resolve().parents[1] / "src" / "cnnlens"
# Rich calls whose text arguments are markup (or reach the terminal): positional and these keywords.
SINK_METHODS = {"print", "log", "add_row", "add_column", "add_task", "rule", "out"}
SINK_CONSTRUCTORS = {"Table", "Column", "Panel"}
TEXT_KEYWORDS = {"title", "caption", "header", "footer", "description"}
ESCAPERS = {"safe", "shown"}
PRAGMA = "# console: markup checked"
# A format spec that only numbers accept: `{n:,}`, `{x:.2f}`, `{p:.0%}`, `{k:d}`.
NUMERIC_SPEC = re.compile(r"[-+ ]?#?0?\d*[,_]?(\.\d+)?[bdeEfFgGnoxX%]|[-+ ]?#?0?\d*[,_](\.\d+)?")


def _name(func: ast.expr) -> str:
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _ok(node: ast.expr | None) -> bool:
    """Whether an argument formats only literals, escaped values (safe/shown) and numbers."""
    if node is None or isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Call):
        name = _name(node.func)
        if name in ESCAPERS:
            return True
        if name in ("Text", "assemble"):  # plain text: every piece a literal or escaped
            return all(_ok(a) for a in node.args)
        if name == "join" and isinstance(node.func, ast.Attribute):
            return _ok(node.func.value) and all(_ok(a) for a in node.args)
        return False
    if isinstance(node, ast.JoinedStr):
        return all(_ok(v) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        if node.format_spec is not None:
            spec = "".join(str(v.value) for v in node.format_spec.values if isinstance(v, ast.Constant))
            if NUMERIC_SPEC.fullmatch(spec):
                return True
        return node.conversion == -1 and _ok(node.value)
    if isinstance(node, (ast.Tuple, ast.List)):
        return all(_ok(e) for e in node.elts)
    if isinstance(node, (ast.GeneratorExp, ast.ListComp)):
        return _ok(node.elt)
    if isinstance(node, ast.Starred):
        return _ok(node.value)
    if isinstance(node, ast.IfExp):
        return _ok(node.body) and _ok(node.orelse)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _ok(node.left) and _ok(node.right)
    return False


def _uses_rich(tree: ast.Module) -> bool:
    for n in ast.walk(tree):
        if isinstance(n, ast.ImportFrom) and n.module and (
                n.module.split(".")[0] == "rich" or (n.level and n.module == "console")):
            return True
        if isinstance(n, ast.Import) and any(a.name.split(".")[0] == "rich" for a in n.names):
            return True
    return False


def unescaped_calls(source: str, filename: str = "<src>") -> list[str]:
    """``file:line: call`` for every console call that formats a non-literal string unescaped."""
    tree = ast.parse(source, filename)
    lines = source.splitlines()
    rich_module = _uses_rich(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _name(node.func)
        raw_write = (name == "write" and isinstance(node.func, ast.Attribute)
                     and isinstance(node.func.value, ast.Attribute)
                     and node.func.value.attr in ("stdout", "stderr"))
        builtin_print = isinstance(node.func, ast.Name) and node.func.id == "print"
        rich_sink = rich_module and ((name in SINK_METHODS and isinstance(node.func, ast.Attribute))
                                     or (name in SINK_CONSTRUCTORS and isinstance(node.func, ast.Name))
                                     or (name == "update"
                                         and any(k.arg == "description" for k in node.keywords)))
        if not (raw_write or builtin_print or rich_sink):
            continue
        args = [] if name == "update" else list(node.args)
        args += [k.value for k in node.keywords if k.arg in TEXT_KEYWORDS]
        if all(_ok(a) for a in args) or PRAGMA in lines[node.lineno - 1]:
            continue
        found.append(f"{filename}:{node.lineno}: {ast.unparse(node)[:120]}")
    return found


@pytest.mark.slow
def test_no_console_call_formats_an_unescaped_string():
    found, sinks = [], 0
    for f in sorted(PKG.rglob("*.py")):
        src = f.read_text(encoding="utf-8")
        found += unescaped_calls(src, str(f.relative_to(PKG)))
        sinks += len(unescaped_calls(src.replace("safe(", "str(").replace("shown(", "str("), f.name))
    assert not found, "pass user strings through cnnlens.console.safe():\n" + "\n".join(found)
    assert sinks > 40  # the scan sees the CLI's console calls (it is not vacuous)
    # the CLI is a package (cli/): the scan reaches each of its command modules, each prints something
    cli = {f.name: len(unescaped_calls(f.read_text(encoding="utf-8").replace("safe(", "str("), f.name))
           for f in sorted((PKG / "cli").glob("*.py"))}
    assert {n for n, k in cli.items() if k} >= {"analysis.py", "info.py", "output.py",
                                                 "training.py", "visualize.py"}, cli
    assert sum(cli.values()) > 40, cli


@pytest.mark.parametrize("code,bad", [
    ("console.print(f'wrote {path}')", True),
    ("console.print(f'wrote {safe(path)}')", False),
    ("console.print(f'{n:,} rows, {acc:.2f}%, {k:d}')", False),
    ("console.print(f'{k}')", True),                      # an int? a name? unknown: escape it
    ("console.print(f'{path!r}')", True),                 # repr keeps [bold] as markup
    ("console.print(line, markup=False)", True),          # markup=False still lets ESC through
    ("t.add_row(name, f'{v:,}')", True),
    ("t.add_row(safe(name), *(f'{v:,}' for v in row), style='bold')", False),
    ("Table(*header, title='x')", True),
    ("Table(*[safe(h) for h in header], title=f'{safe(split)} split')", False),
    ("Table('a', title=split)", True),
    ("p.update(task, description=label)", True),
    ("p.update(task, completed=done)", False),
    ("err_console.print(Text(msg))", True),
    ("err_console.print(Text.assemble(('error:', 'red'), ' ', shown(msg)))", False),
    ("console.print('most: ' + '; '.join(f'{safe(a)}' for a in xs))", False),
    ("console.print('most: ' + '; '.join(xs))", True),
    ("sys.stderr.write(msg)", True),
    ("print(path)", True),
])
def test_the_scan_flags_unescaped_calls(code, bad):
    src = "from rich.table import Table\n" + code + "\n"
    assert bool(unescaped_calls(src)) is bad


# ---- the helpers, against hand-written expectations --------------------------------------------

def test_shown_and_safe():
    from cnnlens.console import console, err_console, safe, shown

    assert shown("a\x1b[2Jb\x07\n\rc\td\x7f\x9b") == "a\\x1b[2Jb\\x07\\n\\rc\\td\\x7f\\x9b"
    assert shown("abc\u202edef") == "abc\\u202edef"  # a bidi override cannot reorder the line
    assert shown("naïve 日本 <b>y</b> [red]") == "naïve 日本 <b>y</b> [red]"
    for s in ("[bold]x", "x[/bold]", "[link=mailto:x]click", "a\\[red]b", "end\\", "[", "]", "[b][/b]",
              ":smile:", "\x1b[31mred\n"):
        for c in (console, err_console):  # parsed as the CLI's consoles parse markup (no :emoji:)
            assert c.render_str(f"[b]{safe(s)}[/b] tail").plain == shown(s) + " tail", s
            if not s.endswith("\\"):  # rich doubles a final backslash so that a closing tag may follow
                assert c.render_str(safe(s)).plain == shown(s), s


def test_print_table_never_cuts_a_cell():
    import io

    from rich.console import Console
    from rich.table import Table

    from cnnlens.console import print_table

    def table() -> Table:
        t = Table("method", "insertion-deletion", "faithfulness", title="trust [x]: 4 images")
        t.add_row("gradient_x_input", "0.25", "[red]FAIL[/red]")
        t.add_row("gradcam_pp", "", "PASS")
        return t

    buf = io.StringIO()
    print_table(table(), Console(file=buf, width=40, soft_wrap=True))  # a pipe or a file: full width
    lines = buf.getvalue().splitlines()
    assert lines[0] == "trust : 4 images"  # the title is markup (the caller escapes user text)
    assert lines[2] == "┃ method           ┃ insertion-deletion ┃ faithfulness ┃"
    assert lines[4] == "│ gradient_x_input │ 0.25               │ FAIL         │"

    buf = io.StringIO()
    print_table(table(), Console(file=buf, width=40, soft_wrap=True, force_terminal=True, no_color=True))
    text = re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())  # a narrow terminal: one record per line
    assert text.splitlines() == ["trust : 4 images",
                                 "gradient_x_input: insertion-deletion 0.25, faithfulness FAIL",
                                 "gradcam_pp: faithfulness PASS"]

    buf = io.StringIO()
    print_table(table(), Console(file=buf, width=100, soft_wrap=True, force_terminal=True, no_color=True))
    assert "│ gradient_x_input │ 0.25" in re.sub(r"\x1b\[[0-9;]*m", "", buf.getvalue())  # fits: a table


def test_damaged_files_are_user_errors_on_one_line(tmp_path, capsys):
    """A third-party parse error (YAML, UTF-8) becomes a CnnlensError naming the file and where."""
    from cnnlens.cli import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epochs: [1, 2\n")
    assert main(["train", "--data", "digits", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {cfg} is not valid YAML (line 3, column 1): ")  # the end of the file
    assert err.count("\n") == 1, err
    cfg.write_bytes(b"train:\n  epochs: \xff\xfe\n")
    assert main(["train", "--data", "digits", "--config", str(cfg), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {cfg} is not UTF-8 text (byte 17); a config is a YAML text file\n"

    from robust_runs import make_run

    run = make_run(tmp_path / "run")
    (run / "model.json").write_bytes(b'{"format_version": \xff}')
    assert main(["evaluate", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run / 'model.json'} is not UTF-8 text (byte 19)"), err

    from cnnlens.errors import CnnlensError
    from cnnlens.train.run import read_history

    hist = tmp_path / "history.csv"
    hist.write_text("epoch,seconds,train_loss\n1,0.5,0.3\n2,x,0.2\n")
    with pytest.raises(CnnlensError, match=r"history\.csv line 3 is damaged \(could not convert string"):
        read_history(hist)


# ---- data inspect: class names and the source -----------------------------------------------------

# `<b>y</b>` cannot be a folder name (it holds a `/`): `<b>y<\\b>` keeps the HTML look
CLASSES = ["[red]x", "<b>y<\\b>", "[link=mailto:x]click"]


@pytest.fixture(scope="module")
def nasty_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("data") / "fold [b]er"
    for k, cls in enumerate(CLASSES):
        d = root / cls
        d.mkdir(parents=True)
        for i in range(3):
            Image.new("L", (8, 8), 40 * k + i).save(d / f"{i}.png")
    return root


@pytest.mark.slow
def test_data_inspect_shows_class_names_and_paths_verbatim(nasty_folder, tmp_path):
    out = tmp_path / "o [i]"
    p = run40("data", "inspect", f"folder:{nasty_folder}", "--out", str(out))
    assert p.returncode == 0, p.stderr
    lines = _lines(p.stdout)
    assert any(ln.endswith(f"from {nasty_folder}") for ln in lines), p.stdout
    for cls in CLASSES:
        # a full table row: the class name whole in its cell, never cut to an ellipsis
        assert any(re.search(rf"│ \d {re.escape(cls)} +│", ln) for ln in lines), p.stdout
    assert f"sample grid: {out / 'samples.png'}" in lines
    assert "…" not in p.stdout


@pytest.mark.slow
def test_data_inspect_narrow_terminal_prints_records(nasty_folder, tmp_path):
    rc, out, raw = run_tty("data", "inspect", f"folder:{nasty_folder}", "--out", str(tmp_path / "o"),
                           columns=20)
    assert rc == 0, out
    assert "…" not in out and "\x1b]8;" not in raw  # no terminal hyperlink from `[link=...]`
    for cls in CLASSES:
        assert re.search(rf"^\d {re.escape(cls)}: train \d, test \d, total 3$", out, re.M), out


@pytest.mark.slow
def test_report_path_with_markup_is_printed_verbatim(tmp_path):
    from robust_runs import make_run

    run = make_run(tmp_path / "[bold]rep")
    p = run40("report", str(run))
    assert p.returncode == 0, p.stderr
    assert f"report: {run / 'report' / 'index.html'}" in _lines(p.stdout), p.stdout
    assert (run / "report" / "index.html").is_file()  # the path printed is the file written


# ---- tables -------------------------------------------------------------------------------------

METHODS = ["gradient_x_input", "gradcam", "gradcam_pp", "control_random", "control_edge"]


@pytest.mark.slow
def test_trust_table_keeps_full_method_names_at_40_columns(tmp_path):
    """#23: piped, the first column read `grad…` for three methods and `cont…` for both controls."""
    from robust_runs import make_run

    run = str(make_run(tmp_path / "run"))
    args = ("trust", run, "--methods", "gradient_x_input,gradcam,gradcam_pp", "--n-images", "4",
            "--steps", "4")
    p = run40(*args)  # a pipe: the whole table, at its full width, one row per line
    assert p.returncode == 0, p.stderr
    assert "…" not in p.stdout, p.stdout
    header = next(ln for ln in p.stdout.splitlines() if ln.startswith("┃ method"))
    assert re.match(r"┃ method +┃ ins-del +┃ del +┃ ins +┃", header), header
    for m in METHODS:
        assert re.search(rf"^│ {m} +│ -?\d\.\d\d\d +│", p.stdout, re.M), (m, p.stdout)

    rc, text, _ = run_tty(*args)  # a 40-column terminal: one record per line
    assert rc == 0, text
    assert "…" not in text, text
    for m in METHODS:
        assert re.search(rf"^{m}: ins-del -?\d\.\d\d\d, del ", text, re.M), (m, text)
