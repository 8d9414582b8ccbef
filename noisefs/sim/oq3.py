"""OpenQASM 3 to a circuit in one parse, with antlr's console kept quiet.

``qiskit.qasm3.loads`` is ``qiskit_qasm3_import.convert(openqasm3.parse(text))``; the
reference parser leaves antlr's default console listener on its lexer, which prints
``line 5:0 token recognition error at: '$'`` to stderr before raising an error without a
message. :func:`parse_qasm3` runs the same lexer, parser and AST visitor with that listener
replaced by one that records the first syntax error (its line and column) and stops, then
the same converter: the same programs are accepted, nothing is printed, and every failure
is one :class:`Qasm3Failure` that says where.
"""

from __future__ import annotations

import re

from qiskit import QuantumCircuit

from noisefs.errors import one_line

__all__ = ["Qasm3Failure", "is_panic", "parse_qasm3"]

_POSITION = re.compile(r"^(?:L)?(?P<line>\d+)(?:,|:C)(?P<col>\d+):\s*(?P<msg>.*)$", re.DOTALL)
_BRACKET = re.compile(r"[()\[\]{}]")
# Python's recursion limit stops the parser near 250 nested parentheses (50 blocks); antlr's
# prediction scans the whole nest first, about a millisecond per level: 50,000 took 40 s.
_MAX_NESTING = 512


class Qasm3Failure(Exception):
    """Why OpenQASM 3 text did not become a circuit: ``message`` (one line), and the
    1-based ``line`` and 0-based ``column`` where known."""

    def __init__(self, message: str, line: int | None = None, column: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.column = column


def is_panic(exc: BaseException) -> bool:
    """True for a Rust panic surfacing from Qiskit (``pyo3_runtime.PanicException``, a
    ``BaseException`` that ``except Exception`` misses)."""
    cls = type(exc)
    return cls.__name__ == "PanicException" and cls.__module__ == "pyo3_runtime"


def _failure(exc: BaseException) -> Qasm3Failure:
    """A failure of the visitor or the converter, its ``L,C:`` prefix read as a position."""
    message = one_line(getattr(exc, "message", None) or exc).strip('"')
    match = _POSITION.match(message)
    if match:
        return Qasm3Failure(match.group("msg"), int(match.group("line")), int(match.group("col")))
    return Qasm3Failure(message or type(exc).__name__)


def _syntax_tree(text: str):
    """The antlr parse tree of ``text``; the first lexer or parser error raises."""
    # lazy: the OpenQASM 3 parser (antlr4) only for OpenQASM 3 input
    from antlr4 import CommonTokenStream, InputStream
    from antlr4.error.ErrorListener import ErrorListener
    from openqasm3 import parser as oq3

    class _FirstError(ErrorListener):
        def syntaxError(self, recognizer, offendingSymbol, line, column, msg, e):  # noqa: N802
            raise Qasm3Failure(f"syntax error: {one_line(msg)}", line, column)

    lexer = oq3.qasm3Lexer(InputStream(text))
    lexer.removeErrorListeners()  # antlr's ConsoleErrorListener prints to stderr
    lexer.addErrorListener(_FirstError())
    parser = oq3.qasm3Parser(CommonTokenStream(lexer))
    parser.removeErrorListeners()
    parser.addErrorListener(_FirstError())
    return parser.program()


def _too_deep(text: str) -> int | None:
    """The line where brackets (of any kind, comments included) first nest deeper than
    the parser can follow, or ``None``: refused before antlr spends seconds on it."""
    depth = 0
    for match in _BRACKET.finditer(text):
        if match.group() in "([{":
            depth += 1
            if depth > _MAX_NESTING:
                return text.count("\n", 0, match.start()) + 1
        elif depth:
            depth -= 1
    return None


def parse_qasm3(text: str) -> QuantumCircuit:
    """OpenQASM 3 text to a ``QuantumCircuit`` exactly as ``qiskit.qasm3.loads`` reads it.

    Raises :class:`Qasm3Failure` for a syntax error (with antlr's line and column), for a
    construct Qiskit cannot represent (with the converter's position), for nesting deeper
    than Python's recursion limit and for a panic inside Qiskit. Prints nothing."""
    try:  # lazy: the OpenQASM 3 parser only for OpenQASM 3 input
        from openqasm3 import parser as oq3
        from qiskit_qasm3_import import convert
    except ImportError as exc:  # pragma: no cover - qiskit[qasm3-import] is a dependency
        raise Qasm3Failure(f"OpenQASM 3 support is not installed: {exc}") from None
    deep = _too_deep(text)
    if deep is not None:
        raise Qasm3Failure(
            f"the program is nested too deeply to parse (more than {_MAX_NESTING} open"
            " parentheses, brackets or braces)",
            deep,
        )
    try:
        tree = _syntax_tree(text)
        program = oq3.QASMNodeVisitor().visitProgram(tree)
        return convert(program)
    except Qasm3Failure:
        raise
    except RecursionError:
        raise Qasm3Failure(
            "the program is nested too deeply to parse (parentheses, blocks or expressions)"
        ) from None
    except Exception as exc:  # the visitor's and converter's errors, and theirs alone
        raise _failure(exc) from None
    except BaseException as exc:
        if is_panic(exc):
            raise Qasm3Failure(f"Qiskit could not build the circuit: {one_line(exc)}") from None
        raise
