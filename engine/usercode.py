"""A user's own code: ``FILE.py:NAME`` and ``package.module:NAME`` references, imported on demand.

A reference names a model (an ``nn.Module`` subclass or a function returning one) or a data set
(a ``Dataset`` subclass or a function returning data) in the user's code. Parsing one touches
nothing; :func:`load` imports the file (its folder goes on ``sys.path``, as ``python FILE.py``
would have it) and checks what NAME is before anything calls it; :func:`call` calls it with the
user's arguments plus those the task can fill in (:data:`TASK_ARGUMENTS`). Whatever the code
does wrong (a syntax error, an exception while importing or constructing) is a ConfigError of
one line naming the file, the option and the exception.

Which code may be imported is engine.store.trust's decision: it :func:`allow` s a source (the
user named it, or a checkpoint's reference passed its checks) and this module refuses to import
any other, so a path that forgot to ask fails closed.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import re
import sys
from dataclasses import dataclass
from typing import Any, Callable

from engine.errors import ConfigError
from engine.text import first_line

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_MODULE = re.compile(rf"{_NAME}(\.{_NAME})*")
MAX_SOURCE = 16 * 2**20  # bytes: a source file larger than this is no one's model definition
_ALLOWED: set[str] = set()  # the sources (files, modules) this process may import: see allow()

# Constructor parameters filled in from the task when the user did not give them, by name: the
# conventional names of PyTorch code (seed tutorials, torchvision, Lightning examples).
TASK_ARGUMENTS: dict[str, tuple[str, ...]] = {
    "features": ("input_dim", "input_size", "in_features", "n_features", "num_features", "in_dim",
                 "input_features", "n_inputs", "num_inputs"),
    "input_shape": ("input_shape", "in_shape", "image_shape"),
    "channels": ("in_channels", "input_channels", "num_channels", "n_channels"),
    "image_size": ("image_size", "img_size"),
    "outputs": ("output_dim", "output_size", "out_features", "n_outputs", "num_outputs", "out_dim",
                "num_classes", "n_classes"),
}


def argument_names() -> str:
    """The names of TASK_ARGUMENTS as ``--help`` lists them."""
    return ", ".join(name for names in TASK_ARGUMENTS.values() for name in names)


@dataclass(frozen=True)
class Reference:
    """Where NAME is: a ``.py`` file (an absolute path once resolved) or an importable module."""

    source: str  # the file's path or the module's dotted name
    name: str

    @property
    def is_file(self) -> bool:
        return self.source.endswith(".py")

    def __str__(self) -> str:
        return f"{self.source}:{self.name}"


def parse(text: Any) -> Reference | None:
    """The reference ``text`` is (``FILE.py:NAME`` or ``package.module:NAME``); None for any other
    text, such as a catalog name."""
    if not isinstance(text, str) or ":" not in text:
        return None
    source, _, name = text.rpartition(":")
    if not re.fullmatch(_NAME, name) or not (source.endswith(".py") or _MODULE.fullmatch(source)):
        return None
    return Reference(source, name)


def resolved(text: str) -> str:
    """``text`` with a file reference's path made absolute (``~`` expanded, links resolved), so that
    a run records where its code is whatever folder a later command runs in; other text as it is."""
    ref = parse(text)
    if ref is None or not ref.is_file:
        return text
    return str(Reference(os.path.realpath(os.path.expanduser(ref.source)), ref.name))


def allow(source: str) -> None:
    """Let this process import the code at ``source`` (a file's absolute path or a module's name)."""
    _ALLOWED.add(source)


def source_file(ref: Reference, option: str) -> str:
    """The file ``ref``'s code is in. A module is looked up as ``import`` would find it, which
    imports its parent packages (the caller has decided the code may run)."""
    if ref.is_file:
        return ref.source
    try:
        spec = importlib.util.find_spec(ref.source)
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"{option}: cannot find the module {ref.source}: {first_line(exc)}", option=option) from None
    except Exception as exc:  # a parent package's own code failed while importing
        raise _failed(option, f"importing {ref.source}", exc) from None
    if spec is None:
        raise ConfigError(f"{option}: there is no module {ref.source} (is its package installed, or the folder "
                          f"holding it the current one?)", option=option)
    if not spec.origin or not os.path.isfile(spec.origin):
        raise ConfigError(f"{option}: the module {ref.source} has no source file (it is built in or frozen), so it "
                          f"holds no model or data set of yours", option=option)
    return spec.origin


def sha256(ref: Reference, option: str) -> str:
    """The SHA-256 of the file ``ref``'s code is in: what a run records, so that a changed file is
    noticed before it is imported again."""
    path = source_file(ref, option)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_SOURCE + 1)
    except OSError as exc:
        raise ConfigError(f"{option}: cannot read {path}: {exc.strerror or exc}", option=option) from None
    if len(data) > MAX_SOURCE:
        raise ConfigError(f"{option}: {path} is over {MAX_SOURCE // 2**20} MiB; that is no Python source file",
                          option=option)
    return hashlib.sha256(data).hexdigest()


def load(ref: Reference, option: str, expect: tuple[type, ...], what: str) -> Callable[..., Any]:
    """NAME from ``ref``'s code, imported now: a subclass of one of ``expect`` or a function defined
    in that code (a factory); anything else is refused before it is called. ``what`` says what
    the user was to give, for the message ("an nn.Module subclass or a function returning one")."""
    module = _import(ref, option)
    found = getattr(module, ref.name, None)
    if found is None:
        offered = [name for name, value in vars(module).items() if _fits(value, module, expect)]
        hint = f"; it defines {', '.join(offered)}" if offered else ""
        raise ConfigError(f"{option}: {ref.source} has no {ref.name}{hint}", option=option)
    if not _fits(found, module, expect):
        raise ConfigError(f"{option}: {ref} is not {what}", option=option)
    return found


def offered(ref_source: str, option: str, expect: tuple[type, ...]) -> list[str]:
    """The names in the code at ``ref_source`` (a file or module) that :func:`load` would accept,
    in the order they are defined: what a front end offers to choose from."""
    module = _import(Reference(ref_source, "_"), option)
    return [name for name, value in vars(module).items() if not name.startswith("_") and _fits(value, module, expect)]


def _fits(value: Any, module: Any, expect: tuple[type, ...]) -> bool:
    """A class of the expected kinds (but not one of them itself), or a plain function of this
    module: never a builtin such as ``os.system`` or a function imported from elsewhere."""
    if inspect.isclass(value):
        return issubclass(value, expect) and value not in expect
    return inspect.isfunction(value) and value.__module__ == module.__name__


def _import(ref: Reference, option: str) -> Any:
    """The module of ``ref``, imported once per process (a file under a name of its own, so it
    never shadows an installed module)."""
    if ref.source not in _ALLOWED:
        raise ConfigError(f"{option}: {ref.source} has not been allowed to run (engine.store.trust decides "
                          f"which code runs)", option=option)
    if not ref.is_file:
        try:
            return importlib.import_module(ref.source)
        except ModuleNotFoundError as exc:
            if exc.name and ref.source.startswith(exc.name):
                raise ConfigError(f"{option}: there is no module {ref.source} (is its package installed, or "
                                  f"the folder holding it the current one?)", option=option) from None
            raise _failed(option, f"importing {ref.source}", exc) from None
        except (Exception, SystemExit) as exc:  # not KeyboardInterrupt: Ctrl+C still stops torchdeck
            raise _failed(option, f"importing {ref.source}", exc) from None
    path = ref.source
    if not os.path.isfile(path):
        raise ConfigError(f"{option}: there is no file {path}", option=option)
    name = "torchdeck_code_" + hashlib.sha256(path.encode()).hexdigest()[:12]
    if name in sys.modules:
        return sys.modules[name]
    folder = os.path.dirname(path)
    if folder not in sys.path:  # the file's own imports of its neighbours work, as under `python FILE.py`
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up by module name
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:
        del sys.modules[name]
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _failed(option, f"importing {path}", exc) from None
    return module


def call(target: Callable[..., Any], arguments: dict[str, Any], task: dict[str, Any], option: str) -> Any:
    """``target(**arguments)``, with every parameter named in TASK_ARGUMENTS that the user left out
    filled in from ``task`` (``features``, ``input_shape``, ``channels``, ``image_size``,
    ``outputs``; those it does not know are left to the parameter's default)."""
    try:
        parameters = inspect.signature(target).parameters
    except (TypeError, ValueError):
        parameters = {}
    given = dict(arguments)
    for fact, names in TASK_ARGUMENTS.items():
        for name in names:
            if name in parameters and name not in given and task.get(fact) is not None:
                given[name] = task[fact]
    takes_any = any(p.kind is p.VAR_KEYWORD for p in parameters.values())
    unknown = [key for key in arguments if key not in parameters and not takes_any]
    if parameters and unknown:
        known = [name for name, p in parameters.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        raise ConfigError(f"{option}_args: {_title(target)} takes no argument {unknown[0]}; it takes "
                          f"{', '.join(known) or 'none'}", option=f"{option}_args")
    missing = [name for name, p in parameters.items() if p.default is p.empty and name not in given
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        raise ConfigError(f"{option}_args: {_title(target)} needs {', '.join(missing)}; give "
                          f"--{option}-args '{{\"{missing[0]}\": ...}}'", option=f"{option}_args")
    try:
        return target(**given)
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise _failed(option, f"{_title(target)}(...)", exc) from None


def _title(target: Callable[..., Any]) -> str:
    return getattr(target, "__qualname__", None) or repr(target)


def _failed(option: str, doing: str, exc: BaseException) -> ConfigError:
    """One line for an exception the user's code raised: where, which, and its first line (with
    the line number of a syntax error)."""
    where = f" (line {exc.lineno})" if isinstance(exc, SyntaxError) and exc.lineno else ""
    return ConfigError(f"{option}: {doing} failed{where}: {type(exc).__name__}: {first_line(exc)}", option=option)
