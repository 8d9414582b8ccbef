"""OpenQASM in: read a file or take text, decode it, parse OpenQASM 2 or 3, place errors.

Every failure is one :class:`~noisefs.errors.CircuitError` whose message reads
``"<file>:<line>: <what> (column C); <what to change>"`` where the position is known; its
``file`` and ``line`` attributes carry the same facts. OpenQASM 2 is read as real suites
write it (see :func:`load_circuit`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from qiskit import QuantumCircuit, qasm2

from noisefs.errors import CircuitError, one_line
from noisefs.sim.declarations import check_declared_sizes
from noisefs.sim.oq3 import Qasm3Failure, is_panic, parse_qasm3

__all__ = ["TEXT_LABEL", "load_circuit", "load_file", "load_text", "looks_like_qasm"]

TEXT_LABEL = "<OpenQASM text>"  # what messages call a circuit given as text

_HEADER = re.compile(
    r"\A(?P<pre>(?:\s+|//[^\n]*(?:\n|\Z)|/\*.*?\*/)*)OPENQASM\s+(?P<version>[0-9]+(?:\.[0-9]+)?)\s*;",
    re.DOTALL,
)
_QASM2_POS = re.compile(r"^(?P<src>.*?):(?P<line>\d+),(?P<col>\d+):\s*(?P<msg>.*)$", re.DOTALL)


def _error(message: str, file: str | None, line: int | str | None = None) -> CircuitError:
    return CircuitError(message, file=file, line=None if line is None else int(line))


def looks_like_qasm(text: str) -> bool:
    """True when a string is OpenQASM text rather than a file name.

    The rule :func:`noisefs.sim.prepare.prepare` documents: the string contains a newline, or
    it starts (after whitespace and comments) with an ``OPENQASM`` header.
    """
    return "\n" in text or "\r" in text or _HEADER.match(text) is not None


# --------------------------------------------------------------------------------------------
# Reading and decoding


def _read_bytes(path: Path, name: str) -> bytes:
    if "\x00" in name:  # open() would raise ValueError
        raise _error(f"{name!r}: not a file name (it holds a NUL byte)", name)
    try:
        if path.is_dir():
            raise _error(f"{name}: is a directory, not an OpenQASM file", name)
        return path.read_bytes()
    except FileNotFoundError:
        hint = ""
        if ";" in name:
            hint = (
                " (to pass OpenQASM text instead of a file name, start it with its"
                " OPENQASM header or write it on several lines)"
            )
        raise _error(f"{name}: no such file{hint}", name) from None
    except PermissionError:
        raise _error(f"{name}: permission denied (cannot read the circuit file)", name) from None
    except IsADirectoryError:
        raise _error(f"{name}: is a directory, not an OpenQASM file", name) from None
    except OSError as exc:
        raise _error(f"{name}: cannot read: {exc.strerror or exc}", name) from None


def _decode(data: bytes, name: str, what: str = "file") -> str:
    """The file (or ``what``) as text: UTF-8 (BOM allowed), CRLF/CR normalised to LF.

    Bytes that are not UTF-8 are accepted inside ``//`` comments (Latin-1 comments are common
    in old suites; the parser ignores comments anyway) and rejected anywhere else.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    if not data.strip():
        raise _error(f"{name}: the {what} is empty; expected an OpenQASM 2 or 3 program", name)
    if b"\x00" in data:
        raise _error(f"{name}: is a binary file, not OpenQASM text", name)
    data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    # Find every byte that is not UTF-8 and accept it only inside a // comment.
    offset = 0
    while offset < len(data):
        try:
            data[offset:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            bad = offset + exc.start
            line_start = data.rfind(b"\n", 0, bad) + 1
            if b"//" not in data[line_start:bad]:
                line = data.count(b"\n", 0, bad) + 1
                raise _error(
                    f"{name}:{line}: byte 0x{data[bad]:02x} is not UTF-8 text "
                    f"(outside a comment); save the {what} as UTF-8",
                    name,
                    line,
                ) from None
            offset = offset + exc.end
    return data.decode("utf-8", errors="replace")


def _header_version(text: str) -> tuple[str | None, int]:
    """(``"2"``/``"3"``/other version string or None, line of the header)."""
    match = _HEADER.match(text)
    if not match:
        return None, 0
    line = match.group("pre").count("\n") + 1
    return match.group("version"), line


# --------------------------------------------------------------------------------------------
# Parser errors with positions


def _qasm2_error(name: str, exc: Exception) -> CircuitError:
    # QiskitError's str() is the repr of its message: quoted, its quotes and backslashes
    # escaped; the message itself is what the parser said
    message = one_line(getattr(exc, "message", None) or str(exc).strip().strip("\"'"))
    match = _QASM2_POS.match(message)
    if not match:
        return _error(f"{name}: {message}", name)
    src = name if match.group("src") in ("<input>", "") else match.group("src")
    msg = match.group("msg")
    hint = ""
    quoted = re.search(r"'([^']+)'", msg)
    word = quoted.group(1) if quoted else "it"
    if "custom instruction" in msg and "before definition" in msg:
        hint = f'; add include "qelib1.inc"; after the OPENQASM line, or define gate {word}'
    elif "is not defined in this scope" in msg:
        hint = f"; declare {word} (qreg/creg or a gate definition) before its first use"
    elif "is already defined" in msg:
        hint = (
            f"; OpenQASM 2 has one namespace for gates and registers (qelib1.inc defines gates"
            f" such as s, t, h, u), so rename {word}"
        )
    elif "unable to find" in msg:
        hint = "; put the include file beside the circuit"
    line = match.group("line")
    return _error(f"{src}:{line}: {msg} (column {match.group('col')}){hint}", src, line)


def _qasm3_error(name: str, failure: Qasm3Failure) -> CircuitError:
    message = one_line(failure.message)
    if failure.line is None:
        return _error(f"{name}: {message}", name)
    column = "" if failure.column is None else f" (column {failure.column})"
    return _error(f"{name}:{failure.line}: {message}{column}", name, failure.line)


# --------------------------------------------------------------------------------------------
# Parsing


def _loads2(text: str, name: str, include_dir: str) -> QuantumCircuit:
    try:
        return qasm2.loads(
            text,
            include_path=(include_dir,),
            custom_instructions=qasm2.LEGACY_CUSTOM_INSTRUCTIONS,
            strict=False,
        )
    except RecursionError:
        raise _error(f"{name}: the program is nested too deeply to parse", name) from None
    except Exception as exc:
        raise _qasm2_error(name, exc) from None
    except BaseException as exc:  # a Rust panic is a BaseException
        if not is_panic(exc):
            raise
        raise _error(
            f"{name}: Qiskit's OpenQASM 2 parser failed: {one_line(exc)}; check the sizes,"
            " indices and numbers in the file",
            name,
        ) from None


def _loads3(text: str, name: str) -> QuantumCircuit:
    try:
        return parse_qasm3(text)
    except Qasm3Failure as failure:
        raise _qasm3_error(name, failure) from None


def _parse(text: str, name: str, include_dir: str) -> QuantumCircuit:
    """Decoded OpenQASM 2 or 3 text (LF line ends) to a circuit; ``name`` is for messages.

    The declared registers are checked against this machine before any parser runs."""
    check_declared_sizes(text, name, include_dir)
    version, line = _header_version(text)
    if version is None:
        try:
            qc = _loads2(text, name, include_dir)
        except CircuitError as first:
            try:
                qc = _loads3(text, name)
            except CircuitError:
                raise CircuitError(
                    f"{first} (the {'text' if name == TEXT_LABEL else 'file'} has no OPENQASM"
                    " header; it was read as OpenQASM 2, and failed as OpenQASM 3 too)",
                    file=first.file,
                    line=first.line,
                ) from None
    elif version.split(".")[0] == "2":
        qc = _loads2(text, name, include_dir)
    elif version.split(".")[0] == "3":
        qc = _loads3(text, name)
    else:
        raise _error(
            f"{name}:{line}: OPENQASM {version} is not supported; use OpenQASM 2.0 or 3.0",
            name,
            line,
        )
    if qc.num_qubits == 0:
        raise _error(f"{name}: the circuit has no qubits; declare some with qreg or qubit", name)
    return qc


def load_file(path: str | os.PathLike) -> tuple[QuantumCircuit, bytes]:
    """The parsed circuit of an OpenQASM file and the file's bytes (for its checksum).

    Includes are looked up beside the file. Messages name the file as given.
    """
    name = os.fspath(path)
    file = Path(name)
    data = _read_bytes(file, name)
    text = _decode(data, name)
    include_dir = str(file.parent.resolve()) if file.parent else "."
    return _parse(text, name, include_dir), data


def load_text(text: str, include_dir: str | os.PathLike = ".") -> QuantumCircuit:
    """Parse OpenQASM 2 or 3 text exactly as :func:`load_file` parses a file with that content.

    CRLF/CR line ends are normalised and a leading BOM dropped; includes are looked up in
    ``include_dir`` (default: the working directory). Messages name ``<OpenQASM text>``.
    """
    data = text.encode("utf-8", errors="replace")
    decoded = _decode(data, TEXT_LABEL, "text")
    return _parse(decoded, TEXT_LABEL, str(Path(include_dir).resolve()))


def load_circuit(path: str | os.PathLike) -> QuantumCircuit:
    """Parse an OpenQASM 2 or 3 file, told apart by its ``OPENQASM`` header.

    OpenQASM 2 is read as real suites write it: the gates older ``qelib1.inc`` lacks (``sx``,
    ``swap``, ``cswap``, ``cu1``, ``rzz``, ``c3x`` ...), includes beside the file, CRLF line
    endings, UTF-8 or Latin-1 bytes in comments. A file without a header is tried as OpenQASM 2,
    then 3. Every failure is a one-line :class:`CircuitError` ``"<file>:<line>: <what>"``.
    """
    return load_file(path)[0]
