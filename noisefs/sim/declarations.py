"""Register sizes read from OpenQASM text before any parser builds a circuit.

Qiskit's parsers allocate what a file declares: ``qubit[1000000000] q;`` grows until the
process aborts, ``qreg q[18446744073709551617];`` panics in Rust, ``h $1000000000;`` creates
a billion hardware qubits. A cheap lexical scan (comments removed) reads every declaration
of both languages — ``qreg``/``creg``, ``qubit``/``bit`` with or without a size, hardware
qubits ``$N`` — and every integer in brackets, and refuses what this machine cannot simulate
with one :class:`~noisefs.errors.CircuitTooLarge` naming the file and line. The scan
over-counts rather than under-counts (a subroutine's ``qubit[N]`` parameters count), so
nothing it lets through can be larger than it says.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from noisefs.errors import CircuitTooLarge
from noisefs.pipeline.budget import available_memory_bytes, format_gib, max_clbits, max_qubits

__all__ = ["DeclaredSizes", "check_declared_sizes", "check_qubit_count", "declared_sizes"]

_MAX_INT_DIGITS = 400  # an integer literal longer than this is refused before int() reads it
_TOO_LARGE = 2**64  # Qiskit's OpenQASM 2 lexer panics on integers from here on
_MAX_BITS = 4096  # constant expressions stop being evaluated beyond this magnitude
_MAX_DEPTH = 64  # parentheses in one size expression
_INCLUDE_DEPTH = 8
_BUILTIN_INCLUDES = {"qelib1.inc", "stdgates.inc"}

_COMMENT = re.compile(r"//[^\n]*|/\*.*?(?:\*/|\Z)", re.DOTALL)
_IDENT = r"[^\W\d]\w*"
_DECLARATION = re.compile(
    rf"(?P<before>[(,]\s*)?"
    rf"(?:\b(?P<old>qreg|creg)\s+{_IDENT}\s*\[(?P<old_size>[^\]]*)\]"
    rf"|\b(?P<new>qubit|bit)\s*\[(?P<new_size>[^\]]*)\]\s*{_IDENT}"
    rf"|\b(?P<single>qubit|bit)\s+{_IDENT})"
)
_HARDWARE = re.compile(r"\$(?P<index>\d+)")
_BRACKET_INT = re.compile(r"\[\s*(?P<int>\d+)\s*\]")
_INCLUDE = re.compile(r'\binclude\s+"(?P<name>[^"\n]+)"\s*;')
_TOKEN = re.compile(
    r"\s*(?:(?P<int>0[xX][0-9a-fA-F_]+|0[oO][0-7_]+|0[bB][01_]+|[0-9][0-9_]*)"
    r"|(?P<op>[-+*/()]))"
)


@dataclass(frozen=True)
class DeclaredSizes:
    """Qubits and classical bits a text declares, with where each total was last raised.

    ``qubits_line``/``clbits_line`` are the 1-based lines (0 when nothing was declared);
    ``where`` names the file those lines are in (an include, or ``None`` for the text)."""

    qubits: int = 0
    clbits: int = 0
    qubits_line: int = 0
    clbits_line: int = 0
    qubits_where: str | None = None
    clbits_where: str | None = None


class _Unreadable(Exception):
    """A size expression this scan does not evaluate (the parser will judge it)."""


class _Huge(Exception):
    """A size expression beyond any machine."""


def _strip_comments(text: str) -> str:
    """The text with comments blanked out; newlines kept so line numbers stay."""
    return _COMMENT.sub(lambda m: "\n" * m.group(0).count("\n") or " ", text)


def _integer(literal: str) -> int:
    digits = literal.replace("_", "")
    if len(digits) > _MAX_INT_DIGITS:
        raise _Huge
    if digits[:2].lower() in ("0x", "0o", "0b"):
        return int(digits, {"x": 16, "o": 8, "b": 2}[digits[1].lower()])
    return int(digits)


def _evaluate(expression: str) -> int:
    """An OpenQASM 3 constant integer size: literals with ``+ - * /`` and parentheses (what
    Qiskit's importer evaluates). Raises :class:`_Unreadable` for anything else and
    :class:`_Huge` for magnitudes beyond 2**4096."""
    tokens: list[str] = []
    pos = 0
    while pos < len(expression):
        match = _TOKEN.match(expression, pos)
        if not match or match.end() == pos:
            if expression[pos:].strip():
                raise _Unreadable
            break
        tokens.append(match.group(0).strip())
        pos = match.end()
    if not tokens:
        raise _Unreadable
    value, rest = _sum(tokens, 0)
    if rest != len(tokens):
        raise _Unreadable
    return value


def _bounded(value: int) -> int:
    if value.bit_length() > _MAX_BITS:
        raise _Huge
    return value


def _sum(tokens: list[str], i: int, depth: int = 0) -> tuple[int, int]:
    value, i = _product(tokens, i, depth)
    while i < len(tokens) and tokens[i] in "+-":
        rhs, j = _product(tokens, i + 1, depth)
        value, i = _bounded(value + rhs if tokens[i] == "+" else value - rhs), j
    return value, i


def _product(tokens: list[str], i: int, depth: int) -> tuple[int, int]:
    value, i = _unary(tokens, i, depth)
    while i < len(tokens) and tokens[i] in "*/":
        rhs, j = _unary(tokens, i + 1, depth)
        if tokens[i] == "/" and rhs == 0:
            raise _Unreadable
        value, i = _bounded(value * rhs if tokens[i] == "*" else value // rhs), j
    return value, i


def _unary(tokens: list[str], i: int, depth: int) -> tuple[int, int]:
    if i >= len(tokens) or depth > _MAX_DEPTH:
        raise _Unreadable
    token = tokens[i]
    if token == "-":
        value, j = _unary(tokens, i + 1, depth + 1)
        return -value, j
    if token == "(":
        value, j = _sum(tokens, i + 1, depth + 1)
        if j >= len(tokens) or tokens[j] != ")":
            raise _Unreadable
        return value, j + 1
    if token in "+*/)":
        raise _Unreadable
    return _integer(token), i + 1


def _line(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def declared_sizes(
    text: str, include_dir: str | None = None, *, where: str | None = None
) -> DeclaredSizes:
    """Qubits and classical bits that ``text`` declares (comments ignored).

    Non-standard includes found in ``include_dir`` are scanned too (their declarations
    count). Raises :class:`CircuitTooLarge` when a size or an integer in brackets is
    beyond any machine (it would overflow the parsers' integers)."""
    return _scan(text, include_dir, where, 0, set())


def _too_large(message: str, where: str | None, line: int) -> CircuitTooLarge:
    return CircuitTooLarge(message, file=where, line=line)


def _scan(
    text: str, include_dir: str | None, where: str | None, depth: int, seen: set[Path]
) -> DeclaredSizes:
    code = _strip_comments(text)
    totals = {"qubit": 0, "bit": 0}
    lines = {"qubit": 0, "bit": 0}
    wheres: dict[str, str | None] = {"qubit": where, "bit": where}

    def add(kind: str, count: int, line: int, at: str | None) -> None:
        totals[kind] += count
        lines[kind], wheres[kind] = line, at

    for match in _BRACKET_INT.finditer(code):
        literal = match.group("int")
        if len(literal) > _MAX_INT_DIGITS or int(literal) >= _TOO_LARGE:
            line = _line(code, match.start())
            shown = literal if len(literal) <= 30 else f"{literal[:12]}... ({len(literal)} digits)"
            raise _too_large(f"the integer [{shown}] is too large (at most 2^64 - 1)", where, line)
    for match in _DECLARATION.finditer(code):
        if match.group("before"):  # a parameter of a subroutine signature
            continue
        line = _line(code, match.start())
        if match.group("single"):
            add("qubit" if match.group("single") == "qubit" else "bit", 1, line, where)
            continue
        keyword = match.group("old") or match.group("new")
        kind = "qubit" if keyword in ("qreg", "qubit") else "bit"
        size_text = match.group("old_size") if match.group("old") else match.group("new_size")
        try:
            size = _evaluate(size_text)
        except _Unreadable:
            continue  # not a constant this scan reads: the parser refuses it
        except _Huge:
            raise _too_large(
                f"the size of {keyword} [{' '.join(size_text.split())[:40]}] is too large",
                where,
                line,
            ) from None
        add(kind, max(0, size), line, where)
    hardware = 0
    for match in _HARDWARE.finditer(code):
        literal = match.group("index")
        index = _TOO_LARGE if len(literal) > _MAX_INT_DIGITS else int(literal)
        if index + 1 > hardware:
            hardware = index + 1
            lines["qubit"], wheres["qubit"] = _line(code, match.start()), where
    totals["qubit"] += hardware
    if include_dir is not None and depth < _INCLUDE_DEPTH:
        for match in _INCLUDE.finditer(code):
            name = match.group("name")
            path = Path(include_dir) / name
            if name in _BUILTIN_INCLUDES and not path.is_file():
                continue
            inner = _read_include(path, seen)
            if inner is None:
                continue
            sizes = _scan(inner, str(path.parent), str(path), depth + 1, seen)
            if sizes.qubits:
                add("qubit", sizes.qubits, sizes.qubits_line, sizes.qubits_where)
            if sizes.clbits:
                add("bit", sizes.clbits, sizes.clbits_line, sizes.clbits_where)
    return DeclaredSizes(
        qubits=totals["qubit"],
        clbits=totals["bit"],
        qubits_line=lines["qubit"],
        clbits_line=lines["bit"],
        qubits_where=wheres["qubit"],
        clbits_where=wheres["bit"],
    )


def _read_include(path: Path, seen: set[Path]) -> str | None:
    """An include file's text, or ``None`` (missing, unreadable, already scanned: the
    parser reports what it must)."""
    try:
        resolved = path.resolve()
        if resolved in seen or not resolved.is_file():
            return None
        seen.add(resolved)
        return resolved.read_bytes().decode("utf-8", errors="replace")
    except OSError:
        return None


def _count(n: int) -> str:
    return str(n) if n < 10**15 else f"about 2^{n.bit_length() - 1}"


def check_qubit_count(num_qubits: int, label: str, *, line: int | None = None) -> None:
    """Refuse ``num_qubits`` beyond what this machine can simulate (exit 2).

    The bound is :func:`~noisefs.pipeline.budget.max_qubits` of the available memory: the
    smallest run of that many qubits must fit. ``label`` starts the message (a file and
    line, ``<OpenQASM text>:3`` or ``circuit 'NAME'``)."""
    available = available_memory_bytes()
    limit = max_qubits(available)
    if num_qubits > limit:
        raise CircuitTooLarge(
            f"{label}: the circuit has {_count(num_qubits)} qubits, more than this machine can "
            f"simulate ({limit} at most with {format_gib(available)} of memory available); "
            "use fewer qubits",
            file=None,
            line=line,
        )


def _check_clbit_count(num_clbits: int, label: str, line: int | None) -> None:
    available = available_memory_bytes()
    limit = max_clbits(available)
    if num_clbits > limit:
        raise CircuitTooLarge(
            f"{label}: the circuit declares {_count(num_clbits)} classical bits, more than "
            f"fit this machine ({limit} at most with {format_gib(available)} of memory "
            "available); declare fewer bits",
            line=line,
        )


def check_declared_sizes(text: str, name: str, include_dir: str | None = None) -> None:
    """Refuse OpenQASM text whose declared registers this machine cannot simulate, before
    any parser builds them; messages read ``"<name>:<line>: ..."`` (``name`` is the file
    or ``<OpenQASM text>``; a declaration in an include names the include)."""
    try:
        sizes = declared_sizes(text, include_dir, where=name)
    except CircuitTooLarge as exc:
        where = exc.file or name
        raise CircuitTooLarge(
            f"{where}:{exc.line}: {exc}; use a smaller size or index",
            file=where,
            line=exc.line,
        ) from None
    for count, line, where, check in (
        (sizes.qubits, sizes.qubits_line, sizes.qubits_where, check_qubit_count),
        (sizes.clbits, sizes.clbits_line, sizes.clbits_where, _check_clbit_count),
    ):
        where = where or name
        try:
            check(count, f"{where}:{line}", line=line)
        except CircuitTooLarge as exc:
            raise CircuitTooLarge(str(exc), file=where, line=line) from None
